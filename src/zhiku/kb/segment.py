"""Text to full-text tokens: CJK runs are cut into words by jieba, everything else is left to FTS5.

FTS5's unicode61 tokenizer splits on spaces and punctuation, which works for English but would keep a
whole Chinese sentence as one token. So CJK runs are segmented with jieba first and re-joined with
spaces; FTS5 (porter + unicode61) then lower-cases, strips diacritics and stems English words.
Pure non-CJK text skips jieba entirely, which keeps English ingestion cheap.
"""

from __future__ import annotations

import logging
import re
import tempfile
import threading
from pathlib import Path
from typing import Any

from zhiku.cjk import HAN_RUN as _CJK_RUN  # jieba segments runs of ideographs
from zhiku.config import default_home

_WORD = re.compile(r"\w+", re.UNICODE)

_tokenizer: Any = None
_pos_tagger: Any = None
_lock = threading.Lock()

# Query-side stop words only (documents are indexed in full): they carry almost no BM25 weight but
# make FTS5 score nearly every row, which is what costs time at a million chunks.
STOPWORDS = frozenset("""
a about above after again against all am an and any are as at be because been before being below between
both but by can could did do does doing down during each few for from further had has have having he her
here hers herself him himself his how i if in into is it its itself just me more most my myself no nor not
now of off on once only or other our ours ourselves out over own same she should so some such than that the
their theirs them themselves then there these they this those through to too under until up very was we
were what when where which while who whom why will with would you your yours yourself yourselves s t
的 了 是 在 和 与 及 或 吗 呢 吧 啊 么 什么 哪 哪些 哪个 如何 怎么 怎样 为什么 谁 多少 几 个 一个 这 那 这个 那个
有 也 都 就 请 问 被 把 对 从 而 并 之 其 中 为 以 于 上 下 里 得 地 着 过 我 你 他 她 它 我们 你们 他们
""".split())


def _jieba() -> Any:
    """jieba's tokenizer, initialised once and quietly; its dictionary cache goes under ZHIKU_HOME (a temporary
    folder only when that cannot be written)."""
    global _tokenizer
    if _tokenizer is None:
        with _lock:
            if _tokenizer is None:
                import jieba

                jieba.setLogLevel(logging.WARNING)
                tok = jieba.Tokenizer()
                cache = default_home() / "cache"
                try:
                    cache.mkdir(parents=True, exist_ok=True)
                except OSError:
                    cache = Path(tempfile.gettempdir())
                tok.tmp_dir = str(cache)
                tok.initialize()
                _tokenizer = tok
    return _tokenizer


def pos_tagger() -> Any:
    """jieba's part-of-speech tagger over the same tokenizer (one dictionary loaded, one cache folder)."""
    global _pos_tagger
    if _pos_tagger is None:
        tok = _jieba()
        with _lock:
            if _pos_tagger is None:
                import jieba.posseg

                _pos_tagger = jieba.posseg.POSTokenizer(tok)
    return _pos_tagger


def has_cjk(text: str) -> bool:
    return _CJK_RUN.search(text) is not None


def for_index(text: str) -> str:
    """The text FTS5 indexes: CJK runs cut in search mode (words plus their shorter parts, for recall)."""
    if not has_cjk(text):
        return text
    tok = _jieba()
    return _CJK_RUN.sub(lambda m: " " + " ".join(tok.cut_for_search(m.group(0))) + " ", text)


def query_terms(query: str) -> list[str]:
    """Distinct query words (CJK cut precisely), stop words dropped unless nothing else is left."""
    text = query
    if has_cjk(query):
        tok = _jieba()
        text = _CJK_RUN.sub(lambda m: " " + " ".join(tok.cut(m.group(0))) + " ", query)
    words = list(dict.fromkeys(w.lower() for w in _WORD.findall(text)))
    content = [w for w in words if w not in STOPWORDS]
    return content or words

