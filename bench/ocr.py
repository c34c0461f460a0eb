"""OCR: pages per second on image-only PDFs and character accuracy on rendered Chinese and English pages.

`zhiku bench ocr` (or `python -m bench.ocr`). Pages are drawn here with the CJK font scripts/setup-system.sh
installs: CMRC 2018 dev paragraphs (Chinese) and SQuAD v1.1 dev paragraphs (English) from ../shared/evaldata,
12 pt on A4 with 1-inch margins, at 150 and 300 dpi; "noisy" pages add Gaussian noise (sigma 16) and a
rotation of 0.5-1.5 degrees either way. Each set is saved as PNG files and as one image-only PDF.

- throughput: the PDFs read through zhiku's path (`load_guarded`: the worker process, pdfium rendering at
  most at 200 dpi, pages OCR-ed in parallel by one single-threaded engine per core) against the baseline in
  the same run: the way Langchain-Chatchat did it, one page after another in one process, the pictures of
  each page at their own resolution handed to one engine built with its default (all-core) threading.
  The same engine and model on both sides; both warm, alternated, median of the repeats.
- accuracy: 1 - CER over each page's characters (whitespace ignored for Chinese, collapsed for English),
  on the PNGs read by zhiku's image loader and on the PDF pages.
Writes ocr-<stamp>.json and .png under the results folder.
"""

from __future__ import annotations

import json
import os
import random
import re
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from ._evaldata import paragraphs
from .report import save_area

FONT = "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc"
A4 = (8.27, 11.69)


def _wrap(text: str, font: Any, width: float) -> list[str]:
    lines, line = [], ""
    for word in re.findall(r"[\x21-\x7e]+ ?|\s|.", text):  # ASCII words whole, anything else by character
        if line and font.getlength(line + word.rstrip()) > width:
            lines.append(line.rstrip())
            line = word.lstrip()
        else:
            line += word
    return lines + [line.rstrip()] if line.strip() else lines


def render_page(paras: list[str], dpi: int, noisy: bool, rng: random.Random) -> tuple[Any, str]:
    """An A4 page of paragraphs -> (greyscale PIL image, the text drawn on it)."""
    from PIL import Image, ImageDraw, ImageFont

    size = round(12 * dpi / 72)
    font = ImageFont.truetype(FONT, size)
    w, h = round(A4[0] * dpi), round(A4[1] * dpi)
    img = Image.new("L", (w, h), 255)
    draw = ImageDraw.Draw(img)
    y, pitch, drawn = dpi, round(size * 1.5), []
    for p in paras:
        lines = _wrap(p, font, w - 2 * dpi)
        room = (h - dpi - y) // pitch
        if room <= 0:
            break
        for line in lines[:room]:
            draw.text((dpi, y), line, font=font, fill=0)
            y += pitch
        drawn.append("\n".join(lines[:room]))
        y += pitch // 2
    if noisy:
        import numpy as np

        img = img.rotate(rng.choice((-1, 1)) * rng.uniform(0.5, 1.5), resample=Image.Resampling.BICUBIC,
                         fillcolor=255)
        noise = np.random.default_rng(rng.randrange(1 << 30)).normal(0, 16, (h, w))
        img = Image.fromarray((np.asarray(img, dtype=np.float32) + noise).clip(0, 255).astype(np.uint8))
    return img, "\n".join(drawn)


def _norm(text: str) -> str:
    text = " ".join(text.split())
    return re.sub(r"(?<=[^\x00-\x7f]) | (?=[^\x00-\x7f])", "", text)


def accuracy(reference: str, read: str) -> float:
    """1 - character error rate (Levenshtein distance over the reference length)."""
    from rapidfuzz.distance import Levenshtein

    a = _norm(reference)
    return max(0.0, 1 - Levenshtein.distance(a, _norm(read)) / max(len(a), 1))


def _pages(lang: str, n: int, dpi: int, noisy: bool, seed: int) -> list[tuple[Any, str]]:
    rng = random.Random(seed)
    pool = [p for p in paragraphs(lang) if len(p) >= 150]
    rng.shuffle(pool)
    return [render_page(pool[i * 4:(i + 1) * 4], dpi, noisy, rng) for i in range(n)]


def _pdf(path: Path, images: list[Any], dpi: int) -> Path:
    from fpdf import FPDF

    pdf = FPDF(unit="in", format=A4)
    for img in images:
        pdf.add_page()
        pdf.image(img, x=0, y=0, w=img.width / dpi, h=img.height / dpi)
    pdf.output(str(path))
    return path


def _baseline(path: Path, model: str) -> list[str]:
    """Chatchat's way (its RapidOCRPDFLoader): one page after another in one process, each page's text layer
    and then every picture on it, at the picture's own resolution, to one engine with default threading."""
    from pypdf import PdfReader

    from zhiku.kb.loaders.ocr import encode, page_text

    engine = _baseline_engine(model)
    out = []
    for page in PdfReader(path).pages:
        text = (page.extract_text() or "").strip()
        for picture in page.images:
            text += "\n" + page_text(engine.ocr(encode(picture.image)))
        out.append(text)
    return out


_ENGINES: dict[str, Any] = {}


def _baseline_engine(model: str) -> Any:
    import faster_paddle

    if model not in _ENGINES:
        _ENGINES[model] = faster_paddle.OcrEngine(model_size=model)
    return _ENGINES[model]


def _zhiku(path: Path, model: str) -> list[str]:
    from zhiku.kb.loaders import load_guarded
    from zhiku.kb.loaders.ocr import OcrOptions

    doc = load_guarded(path, 600, 1 << 20, ocr=OcrOptions(max_pages=1000, model=model))  # type: ignore[arg-type]
    texts = {s.page: s.text for s in doc.sections}
    return [texts.get(n, "") for n in range(1, max(texts) + 1)]


def run(quick: bool, out_dir: Path, model: str = "tiny") -> dict[str, Any]:
    from zhiku.kb.loaders import load_guarded

    cores = os.cpu_count() or 1
    n_pdf, n_acc, reps = (4, 2, 1) if quick else (8, 4, 3)
    results: dict[str, Any] = {"model": model, "cores": cores, "throughput": {}, "accuracy": {}}
    with tempfile.TemporaryDirectory(prefix="zhiku-bench-ocr-") as tmp:
        work = Path(tmp)
        # ---- accuracy on PNGs, through the image loader in the worker process
        for lang in ("zh", "en"):
            for dpi in (150, 300):
                for noisy in (False, True):
                    key = f"{lang} {dpi} dpi {'noisy' if noisy else 'clean'}"
                    scores = []
                    for i, (img, ref) in enumerate(_pages(lang, n_acc, dpi, noisy, seed=dpi + 7 * noisy)):
                        png = work / f"{lang}-{dpi}-{int(noisy)}-{i}.png"
                        img.save(png)
                        doc = load_guarded(png, 600, 1 << 20)
                        scores.append(accuracy(ref, "\n\n".join(s.text for s in doc.sections)))
                    results["accuracy"][key] = {"pages": len(scores), "accuracy": statistics.fmean(scores),
                                                "worst_page": min(scores)}
                    print(f"accuracy {key}: {statistics.fmean(scores):.4f}", flush=True)
        # ---- throughput on image-only PDFs (half Chinese, half English pages)
        for dpi in (150, 300):
            pages = _pages("zh", n_pdf // 2, dpi, True, seed=dpi) + _pages("en", n_pdf // 2, dpi, True, seed=dpi)
            pdf = _pdf(work / f"scan-{dpi}.pdf", [img for img, _ in pages], dpi)
            _zhiku(pdf, model)  # warm: worker process, its engines, the baseline's engine
            _baseline_engine(model)
            times: dict[str, list[float]] = {"zhiku": [], "baseline": []}
            texts: dict[str, list[str]] = {}
            for _ in range(reps):
                for name, fn in (("baseline", _baseline), ("zhiku", _zhiku)):
                    started = time.perf_counter()
                    texts[name] = fn(pdf, model)
                    times[name].append(time.perf_counter() - started)
            z, b = statistics.median(times["zhiku"]), statistics.median(times["baseline"])
            results["throughput"][f"{dpi} dpi"] = {
                "pages": len(pages), "zhiku_pages_per_s": len(pages) / z, "baseline_pages_per_s": len(pages) / b,
                "speedup": b / z, "zhiku_s": times["zhiku"], "baseline_s": times["baseline"],
                "pdf_accuracy_zhiku": statistics.fmean(accuracy(r, t) for (_, r), t in zip(pages, texts["zhiku"],
                                                                                            strict=True)),
                "pdf_accuracy_baseline": statistics.fmean(accuracy(r, t) for (_, r), t in
                                                          zip(pages, texts["baseline"], strict=True)),
            }
            print(f"throughput {dpi} dpi: zhiku {len(pages) / z:.2f} pages/s, baseline {len(pages) / b:.2f}",
                  flush=True)
    acc, thr = results["accuracy"], results["throughput"]
    results["readme"] = [
        {"measure": f"OCR pages/s, image-only PDF {d} ({model}, {cores} cores)",
         "value": thr[d]["zhiku_pages_per_s"], "baseline": f"{thr[d]['baseline_pages_per_s']:.2f} (page by page, "
                                                            f"{thr[d]['speedup']:.2f}x)"}
        for d in ("150 dpi", "300 dpi")
    ] + [{"measure": f"OCR character accuracy, {k}", "value": round(acc[k]["accuracy"], 4)}
         for k in ("zh 300 dpi clean", "zh 300 dpi noisy", "zh 150 dpi noisy", "en 300 dpi noisy")]
    save_area(out_dir, "ocr", results, lambda png: _plot(results, png))
    return results


def _plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    thr, acc = results["throughput"], results["accuracy"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.2), gridspec_kw={"width_ratios": [1, 1.6]})
    xs = range(len(thr))
    for offset, key, label, color in ((-0.2, "baseline_pages_per_s", "page by page, one process (Chatchat's way)",
                                       "#999999"), (0.2, "zhiku_pages_per_s", "zhiku (pages in parallel)",
                                                    "#4c72b0")):
        bars = left.bar([x + offset for x in xs], [t[key] for t in thr.values()], 0.4, label=label, color=color)
        left.bar_label(bars, fmt="%.2f")
    left.set_xticks(list(xs), [f"{d}\n({t['speedup']:.2f}x)" for d, t in thr.items()])
    left.set_ylabel("pages per second")
    left.set_title(f"Image-only PDF, {results['model']} model, {results['cores']} cores")
    left.set_ylim(top=max(max(t["zhiku_pages_per_s"], t["baseline_pages_per_s"]) for t in thr.values()) * 1.4)
    left.legend(fontsize=8, loc="upper left")
    names = list(acc)
    bars = right.barh(names, [a["accuracy"] for a in acc.values()], color="#55a868")
    right.bar_label(bars, fmt="%.3f")
    right.axvline(0.95, color="#c44e52", ls="--", lw=1)
    right.axvline(0.90, color="#c44e52", ls=":", lw=1)
    right.set_xlim(0.8, 1.02)
    right.set_xlabel("character accuracy (1 - CER); targets 0.95 clean, 0.90 noisy")
    right.invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---- engine comparison: each engine in its own interpreter (they do not install side by side) --------

_ENGINE_SCRIPT = r"""
import io, json, sys, time
import numpy as np
from PIL import Image
name, paths = sys.argv[1], sys.argv[2:]
if name.startswith("faster-paddle"):
    import faster_paddle
    eng = faster_paddle.OcrEngine(model_size=name.split("-")[-1])
    def read(img):
        buf = io.BytesIO(); img.save(buf, "BMP")
        r = eng.ocr(buf.getvalue())
        return "\n".join(b["text"] for b in r["bounds"].values())
elif name == "rapidocr":
    from rapidocr import RapidOCR
    eng = RapidOCR(params={"Global.log_level": "error"})
    read = lambda img: "\n".join(eng(np.asarray(img)).txts or ())
elif name == "rapidocr-onnxruntime":
    from rapidocr_onnxruntime import RapidOCR
    eng = RapidOCR()
    read = lambda img: "\n".join(t for _, t, _ in (eng(np.asarray(img))[0] or ()))
images = [Image.open(p).convert("RGB") for p in paths]
read(images[0])
out = []
for img in images:
    t = time.perf_counter(); text = read(img); out.append([text, time.perf_counter() - t])
print(json.dumps(out))
"""


def compare_engines(pythons: dict[str, str], out_dir: Path, n: int = 2) -> dict[str, Any]:
    """{engine name: python interpreter with it installed} -> seconds per page and accuracy of each engine on
    the same rendered pages (one line of text per detected box, in the engine's own order), one engine at a
    time. `python -m bench.ocr --engines faster-paddle-tiny=/venv/bin/python rapidocr=/other/bin/python`."""
    import subprocess

    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="zhiku-bench-ocr-") as tmp:
        sets: dict[str, list[tuple[Path, str]]] = {}
        for lang in ("zh", "en"):
            for dpi in (150, 300):
                for noisy in (False, True):
                    key = f"{lang} {dpi} dpi {'noisy' if noisy else 'clean'}"
                    sets[key] = []
                    for i, (img, ref) in enumerate(_pages(lang, n, dpi, noisy, seed=dpi + 7 * noisy)):
                        path = Path(tmp) / f"{key.replace(' ', '-')}-{i}.png"
                        img.save(path)
                        sets[key].append((path, ref))
        for engine, python in pythons.items():
            paths = [str(p) for pages in sets.values() for p, _ in pages]
            run_ = subprocess.run([python, "-c", _ENGINE_SCRIPT, engine, *paths], capture_output=True, text=True,
                                  check=True)
            read = iter(json.loads(run_.stdout.strip().splitlines()[-1]))
            per_set = {}
            for key, pages in sets.items():
                got = [next(read) for _ in pages]
                per_set[key] = {"accuracy": statistics.fmean(accuracy(ref, t) for (_, ref), (t, _) in
                                                             zip(pages, got, strict=True)),
                                "s_per_page": statistics.fmean(s for _, s in got)}
            results[engine] = {"sets": per_set,
                               "s_per_page": statistics.fmean(v["s_per_page"] for v in per_set.values()),
                               "accuracy": statistics.fmean(v["accuracy"] for v in per_set.values())}
            print(f"{engine}: {results[engine]['s_per_page']:.2f} s/page, "
                  f"accuracy {results[engine]['accuracy']:.4f}", flush=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"ocr-engines-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps({"cores": os.cpu_count(), "pages_per_set": n, "engines": results}, indent=1)
                    + "\n", encoding="utf-8")
    return results


if __name__ == "__main__":
    import sys

    results_dir = Path(__file__).resolve().parent / "results"
    if "--pictures" in sys.argv:
        from .ocr_pictures import run as run_pictures

        print(json.dumps(run_pictures("--quick" in sys.argv, results_dir), indent=1)[:3000])
    elif "--engines" in sys.argv:
        pairs = [a.split("=", 1) for a in sys.argv[sys.argv.index("--engines") + 1:]]
        compare_engines({name: python for name, python in pairs}, results_dir)
    else:
        print(json.dumps(run("--quick" in sys.argv, results_dir), indent=1)[:3000])
