"""One stream through a real `zhiku serve` (subprocess, loopback, the official openai client, SSE) gives the
same greedy text as the same request through the batching engine alone, in this process (real smollm2-135m).

Both sides are built from the same settings (one thread, two slots, prompt lookup and prefix cache as
configured by default), so a lone stream takes the same kernels on both: what the server adds (scheduler,
event loop, SSE, detokenising per token) must not change a single token."""

from __future__ import annotations

from pathlib import Path

from openai import OpenAI

from conftest import ServeProcess, settings_for
from zhiku.llm.base import GenerationParams
from zhiku.llm.llama_cpp import LlamaCppModel

QUESTIONS = ["Write a short story about a dragon who learns to read.", "Explain how a bicycle stays upright."]


def messages(q: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": q}]


def test_one_stream_through_the_server_is_the_engine_alone(tmp_path: Path, smollm_path: Path) -> None:
    s = settings_for(tmp_path / "home", smollm_path)
    model = LlamaCppModel(smollm_path, "smollm2", n_ctx=s.ctx, n_threads=s.resolved_threads, parallel=s.parallel,
                          prefix_cache=s.prefix_cache, prompt_lookup=s.prompt_lookup, chunk=s.prefill_chunk)
    try:
        alone = ["".join(d.text for d in model.chat(messages(q), GenerationParams(max_tokens=64, temperature=0.0)))
                 for q in QUESTIONS]
    finally:
        model.close()
    server = ServeProcess(tmp_path / "home", smollm_path, ZHIKU_THREADS=str(s.resolved_threads),
                          ZHIKU_PARALLEL=str(s.parallel), ZHIKU_CTX=str(s.ctx))
    base = server.start()
    try:
        client = OpenAI(base_url=base + "/v1", api_key="none", max_retries=0, timeout=300)
        served = []
        for q in QUESTIONS:
            parts = []
            for chunk in client.chat.completions.create(model=smollm_path.stem, messages=messages(q),  # type: ignore[arg-type]
                                                        stream=True, temperature=0, max_tokens=64):
                if chunk.choices and chunk.choices[0].delta.content:
                    parts.append(chunk.choices[0].delta.content)
            served.append("".join(parts))
    finally:
        server.stop()
    assert all(len(t) > 40 for t in alone), alone
    assert served == alone
