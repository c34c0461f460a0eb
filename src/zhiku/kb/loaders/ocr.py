"""OCR with faster-paddle (PP-OCRv6 tiny/small detection + recognition on ONNX Runtime, the models inside
the wheel: nothing downloads), pages read in parallel.

The options of the current parse (on/off, page cap, CPU threads, model) and its page-progress callback
live in a context variable: the worker process sets them per request, `load(path, ocr=...)` in-process.
With `threads` T, a page set is read T pages at a time by T single-threaded engines (measured faster
than one engine spreading each page over the cores); a single page gets one engine with T threads."""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Literal

from .base import LoaderError
from .layout import Box, paragraphs

Model = Literal["tiny", "small"]  # never "medium": faster-paddle downloads it on first use
PageProgress = Callable[[int, int], None]  # (pages read, pages to read)


@dataclass(frozen=True)
class OcrOptions:
    enabled: bool = True
    max_pages: int = 100  # pages OCR-ed per document at most
    threads: int = 0  # CPU threads OCR may use (0 = every core)
    model: Model = "tiny"
    pictures: bool = True  # read the large pictures on PDF pages that have a text layer

    @property
    def cpu_threads(self) -> int:
        return self.threads or os.cpu_count() or 1


_options: ContextVar[OcrOptions] = ContextVar("zhiku_ocr_options", default=OcrOptions())  # noqa: B039 - frozen
_progress: ContextVar[PageProgress | None] = ContextVar("zhiku_ocr_progress", default=None)


@contextmanager
def using(options: OcrOptions | None, progress: PageProgress | None = None) -> Iterator[None]:
    """Run a parse with these OCR options (None: the defaults) and page-progress callback."""
    t1, t2 = _options.set(options or OcrOptions()), _progress.set(progress)
    try:
        yield
    finally:
        _options.reset(t1)
        _progress.reset(t2)


def options() -> OcrOptions:
    return _options.get()


# Engines are costly to build (about 0.3 s) and hold their models: one per (model, threads, slot), kept
# for the life of the process. A shared engine serialises its calls, so each parallel slot has its own.
_engines: dict[tuple[str, int, int], Any] = {}
_engines_lock = threading.Lock()


def _engine(model: str, threads: int, slot: int) -> Any:
    key = (model, threads, slot)
    with _engines_lock:
        if key not in _engines:
            # Spinning ONNX threads steal cores from a generation or an embedding running beside the OCR.
            os.environ.setdefault("OCR_DET_SPIN", "0")
            os.environ.setdefault("OCR_REC_SPIN", "0")
            if model not in ("tiny", "small"):
                raise LoaderError(f"unknown OCR model {model!r} (tiny or small)")
            try:
                import faster_paddle

                _engines[key] = faster_paddle.OcrEngine(model_size=model, threads=threads)
            except (ImportError, OSError, RuntimeError) as e:  # e.g. a system older than its glibc 2.34
                raise LoaderError(f"the OCR engine (faster-paddle) cannot run here: {e}; set ocr = false "
                                  "to skip OCR") from e
        return _engines[key]


def encode(image: Any) -> bytes:
    """A PIL image as the bytes the engine decodes; BMP costs a copy where PNG would cost a compression."""
    buf = io.BytesIO()
    image.convert("RGB").save(buf, "BMP")
    return buf.getvalue()


def page_text(result: dict[str, Any]) -> str:
    """One engine result -> the page's paragraphs, separated by blank lines."""
    boxes = [Box(b["topLeftCoord"][0], b["topLeftCoord"][1], b["bottomRightCoord"][0],
                 b["bottomRightCoord"][1], str(b["text"]))
             for b in result.get("bounds", {}).values() if float(b.get("confidence", 1.0)) >= 0.5]
    return "\n\n".join(paragraphs(boxes))


def read_image(data: bytes, engine: Any) -> str | LoaderError:
    """The page's text, or the reason it could not be read (one bad page must not cost the others)."""
    try:
        return page_text(engine.ocr(data))
    except RuntimeError as e:
        return LoaderError(f"OCR failed: {str(e)[:200]}")


def read_pages(pages: Iterable[bytes], total: int) -> list[str | LoaderError]:
    """Encoded page images (produced lazily, in this thread) -> each page's text, in order. Pages are read
    `threads` at a time; at most twice that many wait in memory. Progress goes to the current callback."""
    opts, progress = options(), _progress.get()
    width = max(1, min(opts.cpu_threads, total))
    per_engine = max(1, opts.cpu_threads // width)
    done = 0

    def report() -> None:
        if progress is not None:
            progress(done, total)

    report()
    if width == 1:
        out: list[str | LoaderError] = []
        for data in pages:
            out.append(read_image(data, _engine(opts.model, per_engine, 0)))
            done += 1
            report()
        return out
    slots = list(range(width))
    slot_lock = threading.Lock()

    def work(data: bytes) -> str | LoaderError:
        with slot_lock:
            slot = slots.pop()
        try:
            return read_image(data, _engine(opts.model, per_engine, slot))
        finally:
            with slot_lock:
                slots.append(slot)

    results: list[Future[str | LoaderError]] = []
    with ThreadPoolExecutor(width, thread_name_prefix="zhiku-ocr") as pool:
        for data in pages:
            while len(results) - done >= 2 * width:  # keep memory bounded: wait for the oldest page
                results[done].result()
                done += 1
                report()
            results.append(pool.submit(work, data))
        for f in results[done:]:
            f.result()
            done += 1
            report()
    return [f.result() for f in results]
