"""Retrieval parity of the two stores (python -m bench._store_parity [OUT]): `zhiku eval retrieval` with use-m3 on
SQuAD v1.1 dev (2,000-question sample, seed 0) and CMRC 2018 dev (all questions), once on SQLite and once on a
throw-away PostgreSQL + pgvector; reports in OUT/report-<set>-<store>/, figures in OUT/results.json."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from bench._kb_stores import local_postgres

from ._evaldata import EVALDATA

ZHIKU = [sys.executable, "-m", "zhiku"]


def main(out: Path) -> None:
    env = {**os.environ, "ZHIKU_HOME": str(out / "home")}
    sets = (("squad", EVALDATA / "squad_v1.1_dev" / "dev-v1.1.json", ["--limit", "2000"]),
            ("cmrc", EVALDATA / "cmrc2018_dev" / "cmrc2018_dev.json", []))
    for name, src, _ in sets:
        if not (out / name / "corpus.jsonl").exists():
            subprocess.run([*ZHIKU, "eval", "convert", name, str(src), str(out / name)], env=env, check=True)
    results: dict[str, object] = {}
    with local_postgres() as url:
        for name, _, limit in sets:
            for store, extra in (("sqlite", {}), ("postgresql", {"ZHIKU_DATABASE_URL": url})):
                started = time.time()
                r = subprocess.run([*ZHIKU, "eval", "retrieval", str(out / name), "--embedder", "use-m3", "--json",
                                    *limit, "--out", str(out / f"report-{name}-{store}")],
                                   env={**env, **extra}, capture_output=True, text=True)
                print(name, store, r.returncode, round(time.time() - started), flush=True)
                results[f"{name}/{store}"] = json.loads(r.stdout) if r.returncode == 0 else r.stderr[-2000:]
                (out / "results.json").write_text(json.dumps(results, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/zhiku-store-parity"))
