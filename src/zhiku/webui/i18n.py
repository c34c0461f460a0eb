"""UI strings in Chinese and English, and how a request picks its language.

Static labels go to Gradio's own `gr.I18n`, which the browser translates from `navigator.language`.
Text the server writes at run time (tables, status, sources, messages) is translated here from the
request's first Accept-Language tag, which is the same preference, so both halves agree.
`settings.language` ("zh" / "en") overrides the browser for both.
"""

from __future__ import annotations

from typing import Literal

Lang = Literal["zh", "en"]

STRINGS: dict[str, tuple[str, str]] = {
    # key: (zh, en)
    "title": ("# 知库 zhiku", "# 知库 zhiku"),
    "subtitle": ("本地知识库问答 · 离线运行", "Local knowledge-base question answering · offline"),
    "tab_chat": ("对话", "Chat"),
    "tab_kb": ("知识库", "Knowledge bases"),
    "tab_status": ("状态", "Status"),
    # chat page
    "mode": ("对话模式", "Mode"),
    "mode_llm": ("LLM 对话", "LLM chat"),
    "mode_kb": ("知识库问答", "Knowledge-base QA"),
    "mode_file": ("文件对话", "File chat"),
    "mode_search": ("搜索引擎问答", "Search-engine QA"),
    "mode_agent": ("智能体", "Agent"),
    "model": ("模型", "Model"),
    "template": ("提示词模板", "Prompt template"),
    "temperature": ("温度 (Temperature)", "Temperature"),
    "history_turns": ("历史对话轮数", "History turns"),
    "kb": ("知识库", "Knowledge base"),
    "top_k": ("匹配条数 (top_k)", "Matches (top_k)"),
    "score_threshold": ("相关度阈值", "Score threshold"),
    "files": ("上传文件", "Files"),
    "engine": ("搜索引擎", "Search engine"),
    "settings": ("对话设置", "Chat settings"),
    "conversations": ("历史会话", "Conversations"),
    "conversation": ("会话", "Conversation"),
    "open": ("打开", "Open"),
    "delete": ("删除", "Delete"),
    "new_chat": ("新对话", "New chat"),
    "input": ("输入问题", "Your question"),
    "input_ph": ("输入问题，按 Enter 发送", "Ask a question and press Enter"),
    "send": ("发送", "Send"),
    "stop": ("停止", "Stop"),
    "clear": ("清空", "Clear"),
    "export": ("导出 Markdown", "Export Markdown"),
    "export_file": ("导出文件", "Exported file"),
    "chatbot": ("对话", "Conversation"),
    "feedback_reason": ("反馈理由（可选）", "Feedback reason (optional)"),
    "feedback_send": ("提交理由", "Send reason"),
    "like": ("赞", "Like"),
    "dislike": ("踩", "Dislike"),
    # knowledge-base page
    "kb_select": ("选择知识库", "Knowledge base"),
    "refresh": ("刷新", "Refresh"),
    "create_kb": ("新建知识库", "Create a knowledge base"),
    "kb_name": ("名称", "Name"),
    "kb_name_ph": ("字母、数字、中文、- 或 _", "letters, digits, Chinese, - or _"),
    "kb_desc": ("简介", "Description"),
    "embedder": ("嵌入模型", "Embedder"),
    "chunk_size": ("分块长度", "Chunk size"),
    "chunk_overlap": ("分块重叠", "Chunk overlap"),
    "title_enhance": ("标题增强", "Title enhancement"),
    "create": ("创建", "Create"),
    "upload": ("上传文件（可多选）", "Upload files (several at once)"),
    "add_files": ("添加到知识库", "Add to knowledge base"),
    "upload_result": ("上传结果", "Upload result"),
    "documents": ("文档", "Documents"),
    "doc_select": ("选择文档", "Document"),
    "view_chunks": ("查看分块", "View chunks"),
    "reindex": ("重新索引", "Re-index"),
    "delete_doc": ("删除文档", "Delete document"),
    "chunks": ("分块", "Chunks"),
    "rebuild": ("重建索引", "Rebuild"),
    "delete_kb": ("删除知识库", "Delete knowledge base"),
    "confirm_delete": ("确认删除", "Yes, delete it"),
    "cancel": ("取消", "Cancel"),
    "search_test": ("检索测试", "Try retrieval"),
    "query": ("查询", "Query"),
    "search_mode": ("检索方式", "Retrieval"),
    "search": ("检索", "Search"),
    # status page
    "refresh_status": ("刷新状态", "Refresh status"),
    # access
    "auth_message": ("请输入 API 密钥作为密码（用户名任意）。<br>Enter the API key as the password "
                     "(any user name).", ""),
    # ---- run-time text (server side) ----
    "none": ("（无）", "(none)"),
    "no_kb": ("还没有知识库，先在“知识库”页新建一个。", "No knowledge base yet: create one on the Knowledge bases page."),
    "no_kb_here": ("还没有知识库：在左侧新建一个。", "No knowledge base yet: create one on the left."),
    "kb_created": ("已创建知识库 **{name}**。", "Created knowledge base **{name}**."),
    "kb_deleted": ("已删除知识库 **{name}**。", "Deleted knowledge base **{name}**."),
    "kb_confirm": ("确定删除知识库 **{name}** 及其全部 {docs} 个文档？此操作不可撤销。",
                   "Delete knowledge base **{name}** and all its {docs} documents? This cannot be undone."),
    "kb_info": ("**{name}** · {desc} · 嵌入模型 `{embedder}` · 分块 {size}/{overlap} · {docs} 个文档 · {chunks} 个分块",
                "**{name}** · {desc} · embedder `{embedder}` · chunks {size}/{overlap} · {docs} documents · "
                "{chunks} chunks"),
    "pick_kb": ("请先选择知识库。", "Pick a knowledge base first."),
    "pick_doc": ("请先在表格中选择文档。", "Pick a document in the table first."),
    "no_files": ("请先选择文件。", "Choose some files first."),
    "progress_files": ("正在读取文件", "Reading files"),
    "progress_chunks": ("正在生成向量", "Embedding chunks"),
    "progress_index": ("正在建立向量索引", "Building the vector index"),
    "progress_ocr": ("正在识别扫描页 (OCR)", "Reading scanned pages (OCR)"),
    "upload_done": ("已处理 {n} 个文件：{ok} 个成功，{unchanged} 个未变，{failed} 个失败。",
                    "Processed {n} files: {ok} ok, {unchanged} unchanged, {failed} failed."),
    "doc_deleted": ("已删除文档 {doc}。", "Deleted document {doc}."),
    "doc_reindexed": ("已重新索引 {doc}：{chunks} 个分块。", "Re-indexed {doc}: {chunks} chunks."),
    "rebuild_started": ("正在后台重建知识库 **{name}** 的向量：完成之前检索仍使用原有向量。",
                        "Rebuilding knowledge base **{name}** in the background: searches use its current vectors "
                        "until every chunk has its new one."),
    "phase_rebuilding": ("正在用 {embedder} 重建向量 {done} / {total} 个分块{eta}（完成前检索仍使用原有向量）",
                         "rebuilding with {embedder}: {done} / {total} chunks{eta} (searches use the current "
                         "vectors until then)"),
    # the two phases of adding files: searchable (full text) at once, embedded in the background
    "phase_searchable": ("✓ 可检索（全文）", "✓ searchable (full text)"),
    "phase_embedding": ("向量化 {done} / {total} 个分块{eta}（语义检索只覆盖已向量化的部分）",
                        "embedding {done} / {total} chunks{eta} (dense search covers the embedded ones)"),
    "phase_embedded": ("✓ 已向量化", "✓ embedded"),
    "phase_eta": ("，约剩 {minutes} 分钟", ", ~{minutes} min left"),
    "phase_eta_soon": ("，不到 1 分钟", ", <1 min left"),
    "upload_searchable": ("文件已可检索，向量在后台生成。", "The files are searchable now; vectors follow in the background."),
    "no_hits": ("没有匹配的内容。", "Nothing matched."),
    "col_name": ("文件", "File"),
    "col_type": ("类型", "Type"),
    "col_chunks": ("分块数", "Chunks"),
    "col_status": ("状态", "Status"),
    "col_added": ("添加时间", "Added"),
    "col_id": ("编号", "ID"),
    "col_result": ("结果", "Result"),
    "col_text": ("内容", "Text"),
    "col_page": ("页码", "Page"),
    "col_heading": ("标题", "Heading"),
    "status_ok": ("正常", "ok"),
    "status_failed": ("失败", "failed"),
    "status_warning": ("警告", "warning"),
    "status_unchanged": ("未变（内容相同，已在知识库中）", "unchanged (already in, same content)"),
    "sources": ("参考来源", "Sources"),
    "sources_searched": ("检索到、未用于回答", "Searched, not used for the answer"),
    "page": ("第 {page} 页", "page {page}"),
    "score": ("相关度", "score"),
    "download": ("下载", "download"),
    "tool_call": ("🛠 调用工具 {name}", "🛠 Tool {name}"),
    "tool_result": ("结果", "Result"),
    "error": ("出错：{message}", "Error: {message}"),
    "answer_stats": ("{model} · {tokens} 个 token · {seconds:.1f} 秒", "{model} · {tokens} tokens · {seconds:.1f} s"),
    "feedback_thanks": ("已记录反馈，谢谢！", "Feedback recorded, thank you!"),
    "feedback_reason_saved": ("已记录反馈理由，谢谢！", "Feedback reason recorded, thank you!"),
    "feedback_nothing": ("只能评价已完成的回答。", "Only finished answers can be rated."),
    "exported": ("已导出。", "Exported."),
    "nothing_to_export": ("还没有可导出的会话。", "No conversation to export yet."),
    "conv_deleted": ("已删除会话。", "Conversation deleted."),
    "untitled": ("（未命名）", "(untitled)"),
    "file_chat_needs_files": ("文件对话需要先上传文件。", "File chat needs at least one file."),
    "kb_chat_needs_kb": ("知识库问答需要先选择知识库。", "Knowledge-base QA needs a knowledge base."),
    # status page
    "st_item": ("项目", "Item"),
    "st_value": ("值", "Value"),
    "st_model": ("模型", "Model"),
    "st_backend": ("后端", "Backend"),
    "st_ctx": ("上下文长度", "Context length"),
    "st_threads": ("线程数", "Threads"),
    "st_parallel": ("并行槽位", "Parallel slots"),
    "st_queue": ("排队请求", "Queued requests"),
    "st_active": ("正在生成", "Generating now"),
    "st_requests": ("已服务请求", "Requests served"),
    "st_prompt_tokens": ("输入 token 数", "Prompt tokens"),
    "st_completion_tokens": ("输出 token 数", "Completion tokens"),
    "st_kbs": ("知识库", "Knowledge bases"),
    "st_version": ("版本", "Version"),
    "st_size": ("原文件大小", "Files size"),
    "st_embedder": ("默认嵌入模型", "Default embedder"),
    "st_home": ("数据目录", "Data folder"),
    "st_not_loaded": ("模型尚未加载：{message}", "Model not loaded: {message}"),
}

# The auth message is shown before any locale logic runs, so it carries both languages in one string.
STRINGS["auth_message"] = (STRINGS["auth_message"][0], STRINGS["auth_message"][0])

# Keys Gradio translates in the browser (labels, choices, buttons). Run-time text is not among them.
STATIC_KEYS = [k for k in STRINGS if not k.startswith(("st_", "col_", "status_"))]
# Our keys share one namespace with Gradio's own strings ("chatbot", "upload", ...): keep them apart.
PREFIX = "zk_"


def pick(accept_language: str | None, setting: str = "auto") -> Lang:
    """The language for one request: the setting if fixed, else the browser's first preference."""
    if setting in ("zh", "en"):
        return setting  # type: ignore[return-value]
    first = (accept_language or "").split(",")[0].strip().lower()
    return "zh" if first.startswith("zh") else "en"


def t(lang: Lang, key: str, **kwargs: object) -> str:
    """The string `key` in `lang`, formatted with `kwargs`."""
    zh, en = STRINGS[key]
    text = zh if lang == "zh" else en
    return text.format(**kwargs) if kwargs else text


def translations(setting: str = "auto") -> dict[str, dict[str, str]]:
    """Dictionaries for gr.I18n. With a fixed language, every locale (and the fallback) gets that one."""
    zh = {PREFIX + k: STRINGS[k][0] for k in STATIC_KEYS}
    en = {PREFIX + k: STRINGS[k][1] for k in STATIC_KEYS}
    if setting == "zh":
        return {"en": zh, "zh": zh, "zh-CN": zh, "zh-TW": zh}
    if setting == "en":
        return {"en": en, "zh": en, "zh-CN": en, "zh-TW": en}
    # Gradio ships its own zh-CN / zh-TW strings for built-in widgets; our keys sit beside them.
    return {"en": en, "zh": zh, "zh-CN": zh, "zh-TW": zh}
