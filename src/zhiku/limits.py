"""The request and upload limits, each checked by one method here: the HTTP middleware calls them as the
bytes arrive, the upload routes on what they read, and the knowledge-base service on files that come in some
other way (the web UI, the CLI). A refusal names the setting that sets the limit.
"""

from __future__ import annotations

from dataclasses import dataclass

from zhiku.config import Settings
from zhiku.errors import ErrorKind, ZhikuError

MB = 1024 * 1024
SQL_INT_MAX = 2**63 - 1  # ids and offsets past this are refused at the edge: SQLite and PostgreSQL overflow


class LimitExceeded(ZhikuError):
    """A limit was crossed: `too_large` (413) for sizes and counts of bytes and files, else 400."""

    kind: ErrorKind = "too_large"


def size_text(n: float) -> str:
    """A byte count as people read it, the one way every message and page shows one: 10 B, 36 KB, 1.5 MB, 3 GB
    (units of 1024, at most one decimal, none when it is 0)."""
    value, unit = float(n), "B"
    for bigger in ("KB", "MB", "GB"):
        if abs(value) < 1024:
            break
        value, unit = value / 1024, bigger
    return f"{value:.1f}".rstrip("0").rstrip(".") + f" {unit}"


def check_chunk_count(count: int, cap: int) -> None:
    """The per-document chunk cap (0: none). The ingestion pipeline calls it on every document before any
    embedding, whether its chunks come from the splitter or from the caller: a runaway costs seconds, not hours."""
    if cap and count > cap:
        raise LimitExceeded(f"splits into {count:,} chunks, over the limit of {cap:,} per document "
                            "(setting max_chunks_per_document): split the file or raise the limit",
                            kind="invalid_request", code="too_many_chunks")


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int
    max_file_bytes: int
    max_upload_bytes: int
    max_files: int
    max_messages: int
    max_tokens: int

    @classmethod
    def from_settings(cls, s: Settings) -> Limits:
        return cls(max_body_bytes=int(s.max_body_mb * MB), max_file_bytes=int(s.max_upload_mb * MB),
                   max_upload_bytes=int(s.max_request_upload_mb * MB), max_files=s.max_files_per_request,
                   max_messages=s.max_messages, max_tokens=s.max_tokens_cap)

    def body_limit(self, multipart: bool) -> int:
        return self.max_upload_bytes if multipart else self.max_body_bytes

    def check_body(self, size: int, multipart: bool) -> None:
        if size > self.body_limit(multipart):
            setting = "max_request_upload_mb" if multipart else "max_body_mb"
            raise LimitExceeded(f"request body is larger than {size_text(self.body_limit(multipart))} "
                                f"(setting {setting})", code="request_too_large")

    def check_files(self, count: int) -> None:
        if count > self.max_files:
            raise LimitExceeded(f"too many files in one request: the limit is {self.max_files} "
                                "(setting max_files_per_request)", code="too_many_files", param="files")

    def check_file(self, name: str, size: int) -> None:
        if size > self.max_file_bytes:
            raise LimitExceeded(f"file {name!r} is larger than {size_text(self.max_file_bytes)} "
                                "(setting max_upload_mb)", code="file_too_large", param="files")

    def check_given_chunks(self, name: str, texts: list[str]) -> None:
        """Chunks given by hand for a document (Chatchat's custom `docs`) count as the document's bytes
        against the per-file limit; their number meets the chunk cap in the pipeline, as parsed chunks do."""
        self.check_file(name, sum(len(t.encode("utf-8", "surrogatepass")) for t in texts))

    def check_messages(self, key: str, count: int) -> None:
        if count > self.max_messages:
            raise LimitExceeded(f"too many {key}: {count} given, the limit is {self.max_messages} "
                                "(setting max_messages)", kind="invalid_request", code="array_above_max_length",
                                param=key)

    def check_tokens(self, key: str, value: int) -> None:
        if value > self.max_tokens:
            raise LimitExceeded(f"{key} is too large: {value} asked, this server allows at most {self.max_tokens} "
                                "(setting max_tokens_cap)", kind="invalid_request", code="integer_above_max_value",
                                param=key)
