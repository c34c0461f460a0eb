"""The parse worker: `python -m zhiku.kb.loaders.worker`. Reads one JSON request per line on stdin
({"path", "parser", "sys_path", "ocr"}), parses the file, writes one JSON line back ({"doc"} or {"error"}),
preceded by a {"progress": [pages done, pages]} line per page read by OCR.
It is a separate interpreter, not a fork of the server: nothing of the caller (threads, locks, its main
script) leaks in, and the caller can kill it at any moment. Results are JSON, never pickle."""

from __future__ import annotations

import importlib
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import IO, Any

from . import ocr
from .base import LoadedDoc, LoaderError
from .registry import load


def _resolve(ref: str | None) -> Callable[[Path], LoadedDoc]:
    """"module:function" -> the function. The reference comes from the parent process over a private
    pipe (the same trust as multiprocessing's pickle-by-name of a target), never from file content."""
    if not ref:
        return load
    module, _, name = ref.partition(":")
    fn: Callable[[Path], LoadedDoc] = getattr(importlib.import_module(module), name)
    return fn


def _send(out: IO[bytes], payload: dict[str, Any]) -> None:
    out.write(json.dumps(payload, ensure_ascii=False).encode("utf-8") + b"\n")
    out.flush()


def _handle(request: dict[str, Any], out: IO[bytes]) -> dict[str, Any]:
    for entry in reversed(request.get("sys_path") or []):
        if entry not in sys.path:
            sys.path.insert(0, entry)
    options = ocr.OcrOptions(**request["ocr"]) if request.get("ocr") else None

    def pages(done: int, total: int) -> None:
        _send(out, {"progress": [done, total]})

    path = Path(request["path"])
    try:
        parser = _resolve(request.get("parser"))
        if parser is load:
            return {"doc": asdict(load(path, options, pages))}
        with ocr.using(options, pages):
            return {"doc": asdict(parser(path))}
    except LoaderError as e:
        return {"error": str(e)}
    except Exception as e:  # a custom parser may raise anything; report it rather than die
        return {"error": f"parser failed: {type(e).__name__}: {str(e)[:300]}"}


def _exit_with_parent() -> None:
    """A parse can outlive a killed caller (nobody left to enforce the time limit): stop when orphaned."""
    parent = os.getppid()
    while True:
        time.sleep(1)
        if os.getppid() != parent:
            os._exit(3)


def main() -> None:
    # The protocol owns the real stdout; anything a library prints goes to stderr instead.
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    # Parsers log a warning for every oddity of a damaged file; the caller gets the reason in-band.
    logging.disable(logging.WARNING)
    threading.Thread(target=_exit_with_parent, daemon=True).start()
    for line in sys.stdin.buffer:
        _send(out, _handle(json.loads(line), out))


if __name__ == "__main__":
    main()
