"""The OpenAI-compatible backend against a real upstream: a second zhiku server on loopback.

Server A runs smollm2-135m in process; server B has llm_backend=openai pointing at A's /v1, as a user
would point it at Ollama or vLLM. What comes out of B must be what A produced.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import openai
import pytest
from openai import OpenAI

from conftest import running
from zhiku.config import Settings
from zhiku.server.app import create_app

MESSAGES = [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "Name a colour."}]


@pytest.fixture(scope="module")
def pair(smollm_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ZHIKU_HOME", str(home))
        upstream = create_app(Settings(home=home, model=str(smollm_path), ctx=1024, parallel=1, threads=1,
                                       queue_size=0, ui=False), ui=False)
        with running(upstream) as base_a:
            proxy = create_app(Settings(home=home, llm_backend="openai", model="smollm2-135m",
                                        upstream_base_url=base_a + "/v1", parallel=2, ui=False), ui=False)
            with running(proxy) as base_b:
                yield SimpleNamespace(
                    a=OpenAI(base_url=base_a + "/v1", api_key="x", max_retries=0),
                    b=OpenAI(base_url=base_b + "/v1", api_key="x", max_retries=0),
                    upstream=upstream.state.services.llm, proxy=proxy.state.services.llm)


def test_proxy_serves_the_upstream_model(pair: SimpleNamespace) -> None:
    assert [m.id for m in pair.b.models.list()] == ["smollm2-135m"]


def test_same_text_and_usage_through_the_proxy(pair: SimpleNamespace) -> None:
    kw = dict(model="smollm2-135m", messages=MESSAGES, temperature=0, seed=1, max_tokens=20)
    direct = pair.a.chat.completions.create(**kw)
    proxied = pair.b.chat.completions.create(**kw)
    assert proxied.choices[0].message.content == direct.choices[0].message.content
    assert proxied.choices[0].finish_reason == direct.choices[0].finish_reason
    assert proxied.usage.model_dump() == direct.usage.model_dump()  # the upstream's exact counts

    pieces, usage = [], None
    for chunk in pair.b.chat.completions.create(**kw, stream=True, stream_options={"include_usage": True}):
        usage = chunk.usage or usage
        pieces += [c.delta.content or "" for c in chunk.choices]
    assert "".join(pieces) == direct.choices[0].message.content
    assert usage is not None and usage.completion_tokens == direct.usage.completion_tokens


def test_completions_and_max_tokens_pass_through(pair: SimpleNamespace) -> None:
    r = pair.b.completions.create(model="smollm2-135m", prompt="1, 2, 3,", max_tokens=5, temperature=0)
    assert r.usage.completion_tokens == 5 and r.choices[0].finish_reason == "length"


def test_upstream_refusals_keep_their_meaning(pair: SimpleNamespace) -> None:
    # A has one slot and no queue: while it streams, the proxy's second request is refused with 503
    stream = pair.a.completions.create(model="smollm2-135m", prompt="1, 2, 3,", max_tokens=400, stream=True)
    try:
        with pytest.raises(openai.APIStatusError) as e:
            pair.b.chat.completions.create(model="smollm2-135m", messages=MESSAGES, max_tokens=4)
        assert e.value.status_code == 503 and e.value.response.headers.get("retry-after")
    finally:
        stream.close()
    with pytest.raises(openai.NotFoundError):
        pair.b.chat.completions.create(model="other", messages=MESSAGES, max_tokens=4)
