"""Reading an untrusted file safely: archive formats are checked for zip bombs before any parser sees them,
and the parse runs in a worker process that is killed when it takes longer than the time limit.

Workers are separate interpreters (`python -m zhiku.kb.loaders.worker`), kept in a small pool: a fork of
the server would inherit its inference threads and locks, multiprocessing's spawn/forkserver re-run the
caller's main script in every child, and a fresh interpreter per file would pay about a second of library
imports each time. A worker that hangs is killed and replaced; results come back as one JSON line."""

from __future__ import annotations

import atexit
import json
import os
import select
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from zhiku.limits import size_text

from .base import LoadedDoc, LoaderError, Section
from .ocr import OcrOptions, PageProgress
from .registry import check_file, load

ARCHIVE_SUFFIXES = frozenset({".docx", ".xlsx", ".pptx", ".epub"})
MAX_ZIP_ENTRIES = 10_000
_MB = 1024 * 1024
# A worker is retired after this many files, or after one big result, so that its heap does not stay grown.
_MAX_TASKS = 200
_BIG_RESULT = 32 * _MB
_PROGRESS = b'{"progress"'


def check_archive(path: Path, max_unzipped_bytes: int, max_entries: int = MAX_ZIP_ENTRIES) -> None:
    """Refuse a zip whose entries would expand past the limit, before decompressing anything.
    The declared sizes are trusted only because Python's zipfile (used by every parser here) stops
    reading a member at its declared size, so a member cannot secretly expand beyond what we summed."""
    kind = path.suffix.lower()
    try:
        with zipfile.ZipFile(path) as archive:
            entries = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
        raise LoaderError(f"corrupt {kind} file: not a valid zip archive ({e})") from e
    if len(entries) > max_entries:
        raise LoaderError(f"archive has {len(entries):,} entries, over the {max_entries:,} limit")
    total = sum(e.file_size for e in entries)
    if total > max_unzipped_bytes:
        raise LoaderError(f"archive expands to {size_text(total)}, over the {size_text(max_unzipped_bytes)} limit")


# The folder holding the zhiku package, so the worker finds it even when the caller got it via sys.path.
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[3])


class _Worker:
    def __init__(self) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "zhiku.kb.loaders.worker"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, close_fds=True, env=env,
            start_new_session=True,  # Ctrl-C in a terminal reaches the caller, which decides; not the workers
        )
        self.tasks = 0

    def run(self, request: dict[str, Any], timeout: float, pages: PageProgress | None = None) -> bytes:
        """Send one request and wait for its one-line answer; raises TimeoutError or EOFError. Progress
        lines (a page read by OCR) go to `pages` and restart the clock: the limit is for each step."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.tasks += 1
        self.proc.stdin.write(json.dumps(request).encode("utf-8") + b"\n")
        self.proc.stdin.flush()
        fd = self.proc.stdout.fileno()
        poller = select.poll()  # not select.select: a busy server's descriptors may exceed its 1024 limit
        poller.register(fd, select.POLLIN)
        deadline = time.monotonic() + timeout
        head = b""  # the start of the output, while it may still be progress lines
        chunks: list[bytes] = []  # the answer, joined once at the end (it may be tens of MB)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not poller.poll(remaining * 1000):
                raise TimeoutError
            chunk = os.read(fd, 4 * _MB)
            if not chunk:
                raise EOFError
            if not chunks:
                head += chunk
                while head.startswith(_PROGRESS) and b"\n" in head:
                    line, head = head.split(b"\n", 1)
                    done, total = json.loads(line)["progress"]
                    deadline = time.monotonic() + timeout
                    if pages is not None:
                        pages(int(done), int(total))
                if not head or _PROGRESS.startswith(head[:len(_PROGRESS)]) and b"\n" not in head:
                    continue  # nothing left, or a progress line not yet complete
                chunk, head = head, b""
            chunks.append(chunk)
            if chunk.endswith(b"\n"):
                return b"".join(chunks)

    def exit_reason(self) -> str:
        code = self.proc.wait()
        return f"killed by signal {-code}" if code < 0 else f"exit code {code}"

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()

    def close(self) -> None:
        """Let an idle worker finish by closing its input; kill it if it does not go."""
        try:
            if self.proc.stdin is not None:
                self.proc.stdin.close()
            self.proc.wait(timeout=2)
        except (OSError, subprocess.TimeoutExpired):
            pass
        self.kill()


class _Pool:
    """Idle workers, reused one file at a time; concurrent callers each get their own."""

    def __init__(self) -> None:
        self.idle: list[_Worker] = []
        self.lock = threading.Lock()
        self.max_idle = max(2, os.cpu_count() or 1)

    def take(self) -> _Worker:
        with self.lock:
            while self.idle:
                worker = self.idle.pop()
                if worker.proc.poll() is None:
                    return worker
        return _Worker()

    def give_back(self, worker: _Worker, result_size: int) -> None:
        if worker.tasks < _MAX_TASKS and result_size < _BIG_RESULT:
            with self.lock:
                if len(self.idle) < self.max_idle:
                    self.idle.append(worker)
                    return
        worker.close()

    def shutdown(self) -> None:
        with self.lock:
            idle, self.idle = self.idle, []
        for worker in idle:
            worker.close()


_pool = _Pool()
atexit.register(_pool.shutdown)


def _from_json(data: dict[str, Any]) -> LoadedDoc:
    return LoadedDoc(
        loader=str(data["loader"]),
        sections=[Section(str(s["text"]), s["page"], [str(h) for h in s["heading"]]) for s in data["sections"]],
        warnings=[str(w) for w in data["warnings"]],
    )


def _reference(parser: Callable[[Path], LoadedDoc]) -> str | None:
    if parser is load:
        return None
    module, name = getattr(parser, "__module__", None), getattr(parser, "__qualname__", "")
    if not module or not name or "." in name or module == "__main__":
        raise ValueError("parser must be a module-level function the worker can import")
    return f"{module}:{name}"


def load_guarded(path: Path, timeout: float, max_unzipped_bytes: int, *, max_entries: int = MAX_ZIP_ENTRIES,
                 parser: Callable[[Path], LoadedDoc] = load, ocr: OcrOptions | None = None,
                 pages: PageProgress | None = None) -> LoadedDoc:
    """`load` with the protections for untrusted files. `parser` must be a module-level function (the
    worker imports it by name); it exists so that tests can force a parser that hangs or crashes.
    `ocr` and `pages` as for `load`; with OCR, `timeout` applies to each page read."""
    path = Path(path).absolute()
    check_file(path)
    if path.suffix.lower() in ARCHIVE_SUFFIXES:
        check_archive(path, max_unzipped_bytes, max_entries)
    request = {"path": str(path), "parser": _reference(parser), "sys_path": sys.path,
               "ocr": asdict(ocr) if ocr is not None else None}
    worker = _pool.take()
    try:
        raw = worker.run(request, timeout, pages)
    except TimeoutError:
        worker.kill()
        raise LoaderError(f"parse timed out after {timeout:g} s") from None
    except (EOFError, OSError):  # died mid-parse (crash, out of memory) or before reading the request
        reason = worker.exit_reason()
        worker.kill()
        raise LoaderError(f"parser crashed ({reason})") from None
    except BaseException:  # interrupted (KeyboardInterrupt...): the worker's state is unknown
        worker.kill()
        raise
    _pool.give_back(worker, len(raw))
    payload = json.loads(raw)
    if "error" in payload:
        raise LoaderError(str(payload["error"]))
    return _from_json(payload["doc"])
