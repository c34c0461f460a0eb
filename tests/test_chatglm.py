"""The chatglm.cpp backend end to end: the real engine on a tiny ChatGLM3 with random weights.

The model talks gibberish, so these tests check the mechanics the original project got wrong:
max_tokens counts new tokens, system messages reach the model, a cut reply says "length", stop strings
hold, and stream and non-stream agree.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from openai import BadRequestError, OpenAI

from conftest import SHARED, running
from zhiku.config import Settings
from zhiku.server.app import create_app

pytest.importorskip("chatglm_cpp")
TINY = SHARED / "models" / "tiny-chatglm3.bin"
USER = [{"role": "user", "content": "你好"}]


@pytest.fixture(scope="module")
def glm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    if not TINY.is_file():
        pytest.skip(f"{TINY} is missing")
    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ZHIKU_HOME", str(home))
        app = create_app(Settings(home=home, llm_backend="chatglm_cpp", model=str(TINY), ctx=512, parallel=1,
                                  ui=False), ui=False)
        with running(app) as base:
            yield SimpleNamespace(client=OpenAI(base_url=base + "/v1", api_key="x", max_retries=0),
                                  llm=app.state.services.llm, model=Path(TINY).stem)


def test_max_tokens_counts_new_tokens_and_says_length(glm: SimpleNamespace) -> None:
    long_prompt = [{"role": "user", "content": "你好 " * 60}]
    assert glm.llm.count_chat_tokens(long_prompt) > 40  # a long prompt must not eat the budget
    r = glm.client.chat.completions.create(model=glm.model, messages=long_prompt, max_tokens=6, temperature=0)
    assert r.usage.completion_tokens == 6
    assert r.usage.prompt_tokens == glm.llm.count_chat_tokens(long_prompt)
    assert r.choices[0].finish_reason == "length"


def test_stream_matches_non_stream(glm: SimpleNamespace) -> None:
    kw = dict(model=glm.model, messages=USER, max_tokens=8, temperature=0)
    full = glm.client.chat.completions.create(**kw).choices[0].message.content
    pieces = [c.choices[0].delta.content or "" for c in glm.client.chat.completions.create(**kw, stream=True)
              if c.choices]
    assert "".join(pieces) == full and full


def test_system_message_is_kept(glm: SimpleNamespace) -> None:
    with_system = [{"role": "system", "content": "你是一个助手。"}, *USER]
    assert glm.llm.count_chat_tokens(with_system) > glm.llm.count_chat_tokens(USER)
    a = glm.client.chat.completions.create(model=glm.model, messages=USER, max_tokens=8, temperature=0)
    b = glm.client.chat.completions.create(model=glm.model, messages=with_system, max_tokens=8, temperature=0)
    assert b.usage.prompt_tokens > a.usage.prompt_tokens
    assert b.choices[0].message.content != a.choices[0].message.content


def test_stop_string_cuts_the_reply(glm: SimpleNamespace) -> None:
    kw = dict(model=glm.model, messages=USER, max_tokens=8, temperature=0)
    full = glm.client.chat.completions.create(**kw).choices[0].message.content
    stop = full[len(full) // 2: len(full) // 2 + 2]
    assert stop.strip(), full
    cut = glm.client.chat.completions.create(**kw, stop=[stop])
    assert cut.choices[0].message.content == full[: full.index(stop)]
    assert cut.choices[0].finish_reason == "stop"


def test_tools_and_json_output_are_refused_not_ignored(glm: SimpleNamespace) -> None:
    """chatglm.cpp gets no tools and has no grammar: asking for either is a 400 that says so (as for a
    llama.cpp model without tool support), never a plain answer that silently dropped them."""
    tools = [{"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}]
    for choice in (None, "auto", "required", {"type": "function", "function": {"name": "get_time"}}):
        extra = {} if choice is None else {"tool_choice": choice}
        with pytest.raises(BadRequestError) as e:
            glm.client.chat.completions.create(model=glm.model, messages=USER, tools=tools, max_tokens=4, **extra)
        err = e.value.body
        assert e.value.status_code == 400 and err["param"] == "tools", err
        assert "cannot take tools: the chatglm backend does not pass tools" in err["message"], err
    with pytest.raises(BadRequestError) as e:  # streamed: refused before the stream starts
        glm.client.chat.completions.create(model=glm.model, messages=USER, tools=tools, max_tokens=4, stream=True)
    assert e.value.status_code == 400
    plain = glm.client.chat.completions.create(model=glm.model, messages=USER, tools=tools, tool_choice="none",
                                               max_tokens=4, temperature=0)
    assert plain.choices[0].message.content and not plain.choices[0].message.tool_calls
    with pytest.raises(BadRequestError) as e:
        glm.client.chat.completions.create(model=glm.model, messages=USER, max_tokens=4,
                                           response_format={"type": "json_object"})
    assert e.value.body["param"] == "response_format" and "cannot constrain its output to JSON" in \
        e.value.body["message"]
