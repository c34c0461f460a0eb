"""The cost of looking for pictures on PDF pages that have text (`ocr_pictures`, issue 20) on a text PDF
with no pictures: zhiku's PDF loader with the setting on against off, in the same run, alternated, both warm,
median of the repeats (target: at most 5 % slower). `python -m bench.ocr --pictures` (`--quick`: fewer).
Pages: SQuAD v1.1 dev paragraphs (../shared/evaldata) written with fpdf2, Helvetica 11 pt, A4.
Writes ocr-pictures-<stamp>.json and .png under the results folder."""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from ._evaldata import paragraphs
from .report import save_area


def _text_pdf(path: Path, pages: int) -> Path:
    from fpdf import FPDF

    paras = iter(paragraphs("en"))
    pdf = FPDF(format="A4")
    pdf.set_font("Helvetica", size=11)
    for _ in range(pages):
        pdf.add_page()
        while pdf.get_y() < 230:
            pdf.multi_cell(0, 6, next(paras).encode("latin-1", "replace").decode("latin-1"), new_x="LMARGIN",
                           new_y="NEXT")
    pdf.output(str(path))
    return path


def _check_time(path: Path) -> float:
    """The look-up alone (what `ocr_pictures` adds per page), over every page: less noisy than the ratio."""
    from pypdf import PdfReader

    from zhiku.kb.loaders.pdf_pictures import has_pictures

    pages = PdfReader(path).pages
    start = time.perf_counter()
    assert not any(has_pictures(page) for page in pages)
    return time.perf_counter() - start


def run(quick: bool, out_dir: Path) -> dict[str, Any]:
    from zhiku.kb.loaders import load
    from zhiku.kb.loaders.ocr import OcrOptions

    repeats = 5 if quick else 31
    sizes = (10,) if quick else (10, 100)
    cases: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for pages in sizes:
            path = _text_pdf(Path(tmp) / f"text-{pages}.pdf", pages)
            times: dict[str, list[float]] = {"on": [], "off": []}
            # Warm both once; a long paragraph may run onto an extra page, so count what was written.
            pages = len(load(path, OcrOptions(pictures=False)).sections)
            load(path, OcrOptions(pictures=True))
            for i in range(repeats):
                for setting in (("on", "off") if i % 2 else ("off", "on")):
                    start = time.perf_counter()
                    doc = load(path, OcrOptions(pictures=setting == "on"))
                    times[setting].append(time.perf_counter() - start)
                    assert len(doc.sections) == pages and not doc.warnings
            on, off = statistics.median(times["on"]), statistics.median(times["off"])
            check = statistics.median(_check_time(path) for _ in range(repeats))
            cases[f"{pages} pages"] = {"on_s": round(on, 4), "off_s": round(off, 4), "ratio": round(on / off, 4),
                                       "check_s": round(check, 6), "check_share": round(check / off, 5),
                                       "on_runs": [round(t, 4) for t in times["on"]],
                                       "off_runs": [round(t, 4) for t in times["off"]]}
    results = {"what": "PDF loader time on a text PDF with no pictures, ocr_pictures on vs off (medians)",
               "cores": os.cpu_count(), "load": os.getloadavg(), "repeats": repeats, "cases": cases}
    save_area(out_dir, "ocr-pictures", results, lambda png: _plot(results, png))
    return results


def _plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = results["cases"]
    fig, ax = plt.subplots(figsize=(7, 4))
    xs = range(len(cases))
    for offset, key, label, color in ((-0.2, "off_s", "ocr_pictures off", "#999999"),
                                      (0.2, "on_s", "ocr_pictures on", "#4c72b0")):
        bars = ax.bar([x + offset for x in xs], [c[key] for c in cases.values()], 0.4, label=label, color=color)
        ax.bar_label(bars, fmt="%.3f")
    ax.set_xticks(list(xs), [f"{name}\n(on/off {c['ratio']:.3f})" for name, c in cases.items()])
    ax.set_ylabel("seconds to load (median)")
    ax.set_title(f"Text PDF without pictures, {results['cores']} cores")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
