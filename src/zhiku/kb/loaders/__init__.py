"""Document loaders: one small function per file format, each returning text sections with their page and
heading trail. `load` reads a file in-process; `load_guarded` adds the zip-bomb checks and a killable child
process with a time limit, for files from users."""

from .base import LoadedDoc, LoaderError, Section, decode_text
from .guard import ARCHIVE_SUFFIXES, MAX_ZIP_ENTRIES, check_archive, load_guarded
from .registry import SUPPORTED_SUFFIXES, load

__all__ = [
    "ARCHIVE_SUFFIXES",
    "MAX_ZIP_ENTRIES",
    "SUPPORTED_SUFFIXES",
    "LoadedDoc",
    "LoaderError",
    "Section",
    "check_archive",
    "decode_text",
    "load",
    "load_guarded",
]
