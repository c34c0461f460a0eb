"""Eval reports and the README table writer of `zhiku bench`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from zhiku.eval import report

REPO = Path(__file__).resolve().parents[1]


def test_write_retrieval_report(tmp_path: Path) -> None:
    result = {"modes": {m: {"hit@1": 0.5, "hit@3": 0.75, "hit@5": 1.0, "hit@10": 1.0, "mrr@10": 0.625,
                            "ndcg@10": 0.7, "recall@10": 1.0, "latency_ms_median": 12.345}
                        for m in ("bm25", "dense", "hybrid")}}
    paths = report.write(tmp_path, "retrieval", "tiny", result)
    md = paths["md"].read_text(encoding="utf-8")
    assert "| bm25 | 0.500 | 0.750 | 1.000 | 1.000 | 0.625 | 0.700 | 1.000 | 12.3 |" in md
    assert "cores" in md
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads(paths["json"].read_text(encoding="utf-8"))
    assert data["machine"]["cores"] == os.cpu_count() and data["modes"]["dense"]["hit@5"] == 1.0


def test_bench_command_writes_results_and_readme_table(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    bench = repo / "bench"
    bench.mkdir(parents=True)
    (bench / "report.py").write_text((REPO / "bench" / "report.py").read_text(encoding="utf-8"), encoding="utf-8")
    # Stand-ins for the real area benchmarks (minutes each): tiny modules that honour the bench contract.
    (bench / "llm.py").write_text(
        "import json\n"
        "def run(quick, out_dir):\n"
        "    s = {'readme': [{'measure': 'decode tok/s', 'value': 41.5, 'baseline': 20.0}], 'quick': quick}\n"
        "    (out_dir / 'llm-1.json').write_text(json.dumps(s))\n"
        "    return s\n", encoding="utf-8")
    (bench / "kb.py").write_text("def run(quick, out_dir):\n    return {'ingest': {'files_per_s': 3.25}}\n",
                                 encoding="utf-8")
    (bench / "chat.py").write_text("def run(quick, out_dir):\n    raise RuntimeError('no model')\n",
                                   encoding="utf-8")
    readme = repo / "README.md"
    readme.write_text("# x\n\n<!-- bench:start -->\nold\n<!-- bench:end -->\n\ntail\n", encoding="utf-8")
    command = [sys.executable, "-m", "zhiku", "bench", "all", "--quick", "--bench-dir", str(bench)]
    # this repo is not the checkout the running zhiku comes from: its README is not ours to rewrite
    proc = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 1 and "failed: chat" in proc.stderr  # one area failing is reported...
    assert "left as it is" in proc.stderr and "old" in readme.read_text(encoding="utf-8")
    results = [p for p in (bench / "results").glob("*.json") if not p.name.startswith("llm-")]
    assert len(results) == 1
    for p in results:
        p.unlink()
    proc = subprocess.run([*command, "--readme"], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 1 and "failed: chat" in proc.stderr
    results = [p for p in (bench / "results").glob("*.json") if not p.name.startswith("llm-")]
    combined = json.loads(results[0].read_text(encoding="utf-8"))
    assert combined["quick"] is True and combined["machine"]["cores"] == os.cpu_count()
    assert combined["areas"]["chat"]["error"] == "RuntimeError: no model"
    text = readme.read_text(encoding="utf-8")  # ...and the others still land in the README
    assert "old" not in text and text.endswith("<!-- bench:end -->\n\ntail\n")
    assert "| llm | decode tok/s | 41.5 | 20.0 |" in text
    assert "| kb | ingest.files_per_s | 3.25 |  |" in text
    assert "| chat |" not in text and "cores" in text


def test_readme_without_markers_is_left_alone(tmp_path: Path) -> None:
    sys.path.insert(0, str(REPO))
    try:
        from bench import report as bench_report
    finally:
        sys.path.remove(str(REPO))
    readme = tmp_path / "README.md"
    readme.write_text("no markers\n", encoding="utf-8")
    assert bench_report.update_readme(readme, tmp_path) is False
    assert readme.read_text(encoding="utf-8") == "no markers\n"
