"""Load: 32+ concurrent streaming chat clients against a real `zhiku serve` on loopback, for a bounded time.

Every request either completes or gets 503 with Retry-After; nothing else. The server's memory after the
run stays within 10% of what it was after a warm-up, and it still answers afterwards.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import openai
import psutil
import pytest

from conftest import free_port

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


@dataclass
class Server:
    base: str
    process: subprocess.Popen[bytes]

    @property
    def rss(self) -> int:
        return int(psutil.Process(self.process.pid).memory_info().rss)


def zhiku_serve(home: Path, model: Path, port: int, **env: str) -> subprocess.Popen[bytes]:
    """`zhiku serve` as a real subprocess on 127.0.0.1 (also used by the crash tests)."""
    environ = {**os.environ, "ZHIKU_HOME": str(home), "ZHIKU_UI": "false", **env}
    return subprocess.Popen(
        [sys.executable, "-m", "zhiku", "serve", "--model", str(model), "--host", "127.0.0.1",
         "--port", str(port), "--no-ui"],
        env=environ, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def wait_healthy(base: str, process: subprocess.Popen[bytes], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            err = process.stderr.read().decode(errors="replace") if process.stderr else ""
            raise RuntimeError(f"server exited with {process.returncode}: {err[-2000:]}")
        try:
            if httpx.get(base + "/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError("server did not come up")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, smollm_path: Path) -> Iterator[Server]:
    port = free_port()
    proc = zhiku_serve(tmp_path_factory.mktemp("load-home"), smollm_path, port, ZHIKU_PARALLEL="2",
                       ZHIKU_QUEUE_SIZE="8", ZHIKU_CTX="1024", ZHIKU_THREADS="2")
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(base, proc)
        yield Server(base, proc)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


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


def test_32_streaming_clients(server: Server) -> None:
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
