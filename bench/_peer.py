"""zhiku's server beside llama-cpp-python's own (`python -m llama_cpp.server`) on the same GGUF.

Both run as separate processes on loopback ports, started the way a user starts them, with the same context,
the same threads for decoding and for batches, and are read by the same client code: streamed chat completions
(the official `openai` client), the text re-tokenised with the model's own tokenizer so that both are counted
the same way. The peer runs one request at a time (`--interrupt_requests False`: a new request waits instead
of cutting the running one off); zhiku batches up to `parallel` streams.

The peer is llama-cpp-python's server code unchanged, started through `python -m bench._peer` only so that it
loads the model as zhiku does where the CPU advertises AMX (llm/native.py: without llama.cpp's extra AMX/repack
weight layouts, whose kernels fault on the VMs zhiku is built on; a stock start dies at the first prompt there).
The peer needs the `server` extra of llama-cpp-python (`pip install -e '.[bench]'`, which `make bench` does).
The peer runs with the OpenMP runtime's default wait policy (threads spin a while at each barrier), as a
user who starts it by hand gets it, and as `peer_passive` with `OMP_WAIT_POLICY=PASSIVE` (sleeping waits: what
`import zhiku` set before it added a short spin, GOMP_SPINCOUNT=1000), so that the engines can be compared apart
from that setting.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Server:
    name: str
    base: str
    model: str
    proc: subprocess.Popen[bytes]
    log: Path


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_ready(server: Server, timeout: float = 300) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"{server.name} exited: {server.log.read_text(errors='replace')[-2000:]}")
        try:
            if httpx.get(server.base + "/v1/models", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{server.name} did not answer on {server.base} within {timeout:.0f} s")


@contextmanager
def _process(name: str, cmd: list[str], env: dict[str, str], model: str, port: int, work: Path) -> Iterator[Server]:
    log = work / f"{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
    server = Server(name, f"http://127.0.0.1:{port}", model, proc, log)
    try:
        _wait_ready(server)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def peer_env(passive: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env["ZHIKU_PEER_OMP"] = "PASSIVE" if passive else ""
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), str(REPO), os.environ.get("PYTHONPATH")]))
    return env


def peer_main() -> None:
    """`python -m bench._peer <llama_cpp.server arguments>`: llama_cpp.server, models loaded as zhiku loads them."""
    import runpy

    policy = os.environ.pop("ZHIKU_PEER_OMP", "")
    from zhiku.llm.native import patch_llama_defaults  # `import zhiku` sets the OpenMP waits: undone below

    os.environ.pop("GOMP_SPINCOUNT", None)
    if policy:
        os.environ["OMP_WAIT_POLICY"] = policy
    else:
        os.environ.pop("OMP_WAIT_POLICY", None)
    patch_llama_defaults()  # loads llama.cpp (and OpenMP, which reads its policy now)
    sys.argv = ["llama_cpp.server", *sys.argv[1:]]
    runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)


@contextmanager
def servers(path: Path, threads: int, ctx: int, parallel: int, which: list[str]) -> Iterator[dict[str, Server]]:
    """Start the servers named in `which` (zhiku, zhiku_nolookup, peer, peer_passive), all at once: idle, each
    waits without using the cores, so runs can alternate between them."""
    src = str(REPO / "src")
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="zhiku-bench-peer-")))
        out: dict[str, Server] = {}
        for name in which:
            port = _free_port()
            if name.startswith("zhiku"):
                env = dict(os.environ, ZHIKU_HOME=str(work / name), ZHIKU_PROMPT_LOOKUP=str(name == "zhiku").lower(),
                           PYTHONPATH=os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")])))
                cmd = [sys.executable, "-m", "zhiku", "serve", "--model", str(path), "--host", "127.0.0.1",
                       "--port", str(port), "--parallel", str(parallel), "--ctx", str(ctx), "--threads", str(threads),
                       "--no-ui"]
                model = path.stem
            else:
                env = peer_env(passive=name == "peer_passive")
                cmd = [sys.executable, "-m", "bench._peer", "--model", str(path), "--model_alias", "peer",
                       "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(ctx), "--n_threads", str(threads),
                       "--n_threads_batch", str(threads), "--interrupt_requests", "False", "--verbose", "False"]
                model = "peer"
            out[name] = stack.enter_context(_process(name, cmd, env, model, port, work))
        yield out


def tokenizer(path: Path) -> Any:
    import llama_cpp

    vocab = llama_cpp.Llama(str(path), vocab_only=True, verbose=False)
    return lambda text: len(vocab.tokenize(text.encode("utf-8"), add_bos=False, special=False))


def stream(server: Server, messages: list[dict[str, str]], max_tokens: int) -> dict[str, Any]:
    """One streamed greedy chat completion: start, first and last text times, the text."""
    from openai import OpenAI

    client = OpenAI(base_url=server.base + "/v1", api_key="bench", max_retries=0, timeout=900)
    t0 = time.perf_counter()
    first = last = 0.0
    parts: list[str] = []
    for chunk in client.chat.completions.create(model=server.model, messages=messages,  # type: ignore[arg-type]
                                                stream=True, temperature=0, max_tokens=max_tokens):
        if chunk.choices and chunk.choices[0].delta.content:
            last = time.perf_counter()
            first = first or last
            parts.append(chunk.choices[0].delta.content)
    client.close()
    return {"start": t0, "first": first, "last": last, "text": "".join(parts)}


def concurrent(server: Server, prompts: list[list[dict[str, str]]], max_tokens: int,
               count: Any) -> dict[str, Any]:
    """All prompts at once, one thread each; aggregate tokens/s = all tokens / wall time (prompts included)."""
    out: list[dict[str, Any]] = [{} for _ in prompts]

    def run(i: int) -> None:
        out[i] = stream(server, prompts[i], max_tokens)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(prompts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    tokens = [count(r["text"]) for r in out]
    wall = max(r["last"] for r in out) - min(r["start"] for r in out)
    row: dict[str, Any] = {"tokens": sum(tokens), "wall_s": wall, "aggregate_tps": sum(tokens) / wall}
    if len(out) == 1:
        r = out[0]
        row.update(ttft_s=r["first"] - r["start"], decode_tps=(tokens[0] - 1) / max(r["last"] - r["first"], 1e-9))
    row["texts"] = [r["text"] for r in out]
    return row


if __name__ == "__main__":
    peer_main()
