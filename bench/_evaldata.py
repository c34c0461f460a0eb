"""Where the shared evaluation data lies, for every benchmark, and its paragraphs as plain text."""

from __future__ import annotations

import json
from pathlib import Path

# ../shared/evaldata beside the checkout (also from a worktree nested deeper)
EVALDATA = next((p / "shared" / "evaldata" for p in Path(__file__).resolve().parents
                 if (p / "shared" / "evaldata").is_dir()), Path("../shared/evaldata"))


def paragraphs(lang: str) -> list[str]:
    """Every paragraph of SQuAD dev ("en") or CMRC 2018 dev ("zh"), whitespace collapsed."""
    path = (EVALDATA / "cmrc2018_dev" / "cmrc2018_dev.json" if lang == "zh"
            else EVALDATA / "squad_v1.1_dev" / "dev-v1.1.json")
    data = json.loads(path.read_text(encoding="utf-8"))
    return [" ".join(p["context"].split()) for a in data["data"] for p in a["paragraphs"]]
