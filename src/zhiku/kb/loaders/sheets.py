"""Spreadsheets (.xlsx with openpyxl, .csv/.tsv with the csv module): one line per row, each value labelled
with its column header ("名称: 苹果; 价格: 3.5") so that a row read alone still makes sense."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from openpyxl import load_workbook

from .base import LoadedDoc, Section, decode_text


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dt.datetime) and value.time() == dt.time(0):
        return value.date().isoformat()
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    return " ".join(str(value).split())


def _table_text(rows: Iterable[Sequence[Any]]) -> str:
    """First non-empty row is the header; every later row becomes "header: value; ..."."""
    header: list[str] | None = None
    lines: list[str] = []
    for raw in rows:
        row = [_cell(v) for v in raw]
        if not any(row):
            continue
        if header is None:
            header = row
            lines.append(" | ".join(h for h in header if h))
            continue
        parts = []
        for i, value in enumerate(row):
            if value:
                name = header[i] if i < len(header) and header[i] else f"column {i + 1}"
                parts.append(f"{name}: {value}")
        lines.append("; ".join(parts))
    return "\n".join(lines)


def load_xlsx(path: Path) -> LoadedDoc:
    # read_only streams rows instead of building every cell; data_only gives formulas' saved values.
    workbook = load_workbook(path, read_only=True, data_only=True)
    try:
        sections = [Section(text, None, [ws.title])
                    for ws in workbook.worksheets
                    if (text := _table_text(ws.iter_rows(values_only=True)))]
    finally:
        workbook.close()
    return LoadedDoc("xlsx", sections, [])


def _load_delimited(path: Path, delimiter: str, loader: str) -> LoadedDoc:
    warnings: list[str] = []
    text = decode_text(path.read_bytes(), warnings)
    # A single field may legitimately be long (a description column); the default cap is 128 KiB.
    csv.field_size_limit(max(csv.field_size_limit(), 1 << 30))
    if loader == "csv":
        try:  # European exports use ";" — let the sniffer decide among the usual ones
            delimiter = csv.Sniffer().sniff(text[:8192], delimiters=",;\t|").delimiter
        except csv.Error:
            pass
    rows = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    return LoadedDoc(loader, [Section(_table_text(rows))], warnings)


def load_csv(path: Path) -> LoadedDoc:
    return _load_delimited(path, ",", "csv")


def load_tsv(path: Path) -> LoadedDoc:
    return _load_delimited(path, "\t", "tsv")
