"""Load: 32+ concurrent streaming chat clients against a real `zhiku serve` on loopback, for a bounded time.

Every request either completes or gets 503 with Retry-After; nothing else. The server's memory after the
run stays within 10% of what it was after a warm-up, and it still answers afterwards.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import openai
import pytest

from conftest import ServeProcess

CLIENTS = 32
DURATION = 20.0  # seconds of load
WARMUP = 4.0
MAX_TOKENS = 12
PROMPTS = ["Say hello.", "Name a colour.", "What is 2+2?", "Write one word.", "Give a fruit name."]

pytestmark = pytest.mark.slow


@dataclass
class Tally:
    outcomes: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, smollm_path: Path) -> Iterator[ServeProcess]:
    proc = ServeProcess(tmp_path_factory.mktemp("load-home"), smollm_path, ZHIKU_PARALLEL="2",
                        ZHIKU_QUEUE_SIZE="8", ZHIKU_CTX="1024", ZHIKU_THREADS="2")
    try:
        proc.start()
        yield proc
    finally:
        proc.stop()


async def one_client(client: openai.AsyncOpenAI, n: int, deadline: float, tally: Tally) -> None:
    i = n
    while time.monotonic() < deadline:
        i += CLIENTS
        try:
            stream = await client.chat.completions.create(
                model="smollm2-135m", messages=[{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}],
                max_tokens=MAX_TOKENS, temperature=0.0, stream=True)
            finish = None
            async for chunk in stream:
                if chunk.choices and chunk.choices[0].finish_reason:
                    finish = chunk.choices[0].finish_reason
            if finish in ("stop", "length"):
                tally.outcomes["completed"] += 1
            else:
                tally.errors.append(f"stream ended without finish_reason ({finish})")
        except openai.APIStatusError as e:
            retry_after = e.response.headers.get("retry-after")
            if e.status_code == 503 and retry_after is not None and retry_after.isdigit():
                tally.outcomes["503"] += 1
                await asyncio.sleep(min(float(retry_after), 1.0))  # honour it, but keep the test bounded
            else:
                tally.errors.append(f"{e.status_code} retry-after={retry_after}: {e.message[:200]}")
        except Exception as e:  # timeouts, resets, protocol errors: all count against the server
            tally.errors.append(f"{type(e).__name__}: {e}"[:300])


async def run_load(base: str, clients: int, seconds: float) -> Tally:
    tally = Tally()
    async with openai.AsyncOpenAI(base_url=base + "/v1", api_key="none", max_retries=0, timeout=120,
                                  http_client=httpx.AsyncClient(limits=httpx.Limits(max_connections=200),
                                                                timeout=120)) as client:
        deadline = time.monotonic() + seconds
        await asyncio.gather(*(one_client(client, n, deadline, tally) for n in range(clients)))
    return tally


def test_32_streaming_clients(server: ServeProcess) -> None:
    warm = asyncio.run(run_load(server.base, 8, WARMUP))
    assert warm.errors == [] and warm.outcomes["completed"] > 0, warm
    rss_before = server.rss

    started = time.monotonic()
    tally = asyncio.run(run_load(server.base, CLIENTS, DURATION))
    elapsed = time.monotonic() - started
    print(f"\nload: {CLIENTS} clients, {elapsed:.1f}s: {dict(tally.outcomes)}; "
          f"rss before {rss_before / 2**20:.0f} MiB")
    assert tally.errors == [], tally.errors[:10]
    assert tally.outcomes["completed"] >= CLIENTS // 4
    assert tally.outcomes["503"] > 0, "32 clients on 2 slots + 8 queued must overflow the queue"
    assert elapsed < DURATION + 60  # bounded: in-flight requests finish soon after the deadline

    time.sleep(1.0)  # let the slots drain
    rss_after = server.rss
    print(f"rss after {rss_after / 2**20:.0f} MiB ({(rss_after / rss_before - 1) * 100:+.1f}%)")
    assert abs(rss_after - rss_before) <= 0.10 * rss_before

    r = httpx.post(server.base + "/v1/chat/completions", timeout=60, json={
        "model": "smollm2-135m", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4})
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] is not None
