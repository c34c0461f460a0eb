"""Knowledge-base answers: what evidence selection saves, and what streaming with the check costs.

`zhiku bench answers` (or `python -m bench.answers`). Questions from SQuAD v1.1 dev (English) and CMRC 2018 dev
(Chinese), half and half; each is answered from its own paragraph and the two paragraphs that follow it in
the same article (same-topic distractors, as retrieval returns them; in CMRC the neighbouring ones), through the product's path
(`kb_chat.answer_hits`, the default pack, greedy, the answer check on, `answer_quality = fast`). Each question is
asked twice in the same run, with the evidence sentences (`answer_evidence = true`, zhiku's way) and with the
whole chunks (the baseline), in alternating order. Reported: prompt tokens, the model's own time to first token,
and the time from the model's first token to the first answer text the user sees (target: at most 1 s; the
first words are held back up to 0.8 s so that a refusal shows as the one refusal text).
Writes answers-<stamp>.json and .png under the results folder.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import tempfile
from pathlib import Path
from typing import Any

from zhiku.chat import kb_chat
from zhiku.chat.prompts import PromptStore
from zhiku.chat.turn import Turn
from zhiku.chat.types import ChatRequest, ChatResult
from zhiku.config import Settings
from zhiku.kb.types import Hit

from ._evaldata import EVALDATA
from .report import save_area

SETS = (("en", EVALDATA / "squad_v1.1_dev" / "dev-v1.1.json"), ("zh", EVALDATA / "cmrc2018_dev" / "cmrc2018_dev.json"))
WAYS = ("evidence", "whole chunks")


def questions(n: int) -> list[tuple[str, list[Hit]]]:
    """n questions, alternating English and Chinese: (question, [its paragraph, the next two in the file]); the
    next paragraphs are of the same article in SQuAD, neighbouring articles in CMRC."""
    out: list[list[tuple[str, list[Hit]]]] = []
    for _, path in SETS:
        paras = [(a.get("title") or "doc", p) for a in json.loads(path.read_text(encoding="utf-8"))["data"]
                 for p in a["paragraphs"]]
        found = []
        for i in range(0, len(paras) - 2, 7):  # spread over the file: many articles
            trio = paras[i:i + 3]
            hits = [Hit(-1 - j, -1 - j, title, p["context"], 0.5) for j, (title, p) in enumerate(trio)]
            found.append((trio[0][1]["qas"][0]["question"], hits))
        out.append(found[: n // 2])
    return [q for pair in zip(*out, strict=True) for q in pair]


async def _ask(settings: Settings, llm: Any, prompts: PromptStore, question: str, hits: list[Hit],
               evidence: bool) -> dict[str, Any]:
    s = settings.model_copy(update={"answer_evidence": evidence})
    turn = Turn(ChatRequest(query=question, mode="kb", kb="bench", save=False, temperature=0.0, max_tokens=48),
                s, llm, None, prompts)  # type: ignore[arg-type]
    result = ChatResult()
    events = 0
    async for event in kb_chat.answer_hits(turn, hits, "bench"):
        if event.type == "delta":
            events += 1
            turn.note_output()
        result.add(event)
    t = turn.final_timings()
    shown = t.get("first_token_ms")
    model = t.get("model_first_token_ms")
    return {"prompt_tokens": turn.usage.prompt_tokens, "model_ttft_ms": t.get("prompt_eval_ms"),
            "shown_after_model_ms": None if shown is None or model is None else shown - model,
            "total_ms": t["total_ms"], "events": events, "answer": result.answer}


def run(quick: bool, out_dir: Path) -> dict[str, Any]:
    from zhiku.llm.service import LLMService

    n = 8 if quick else 24
    with tempfile.TemporaryDirectory(prefix="zhiku-bench-answers-") as tmp:
        settings = Settings(home=Path(tmp), parallel=1, prefix_cache=False, answer_quality="fast")
        llm = LLMService(settings)
        llm.start()
        prompts = PromptStore(Path(tmp))
        rows: dict[str, list[dict[str, Any]]] = {w: [] for w in WAYS}
        try:
            for k, (question, hits) in enumerate(questions(n)):
                order = WAYS if k % 2 == 0 else WAYS[::-1]  # alternate, so drift in load hits both
                for way in order:
                    r = asyncio.run(_ask(settings, llm, prompts, question, hits, way == "evidence"))
                    rows[way].append({"question": question, **r})
                    print(f"  {way}: {r['prompt_tokens']} prompt tokens, model TTFT {r['model_ttft_ms']} ms, "
                          f"shown +{r['shown_after_model_ms']} ms", flush=True)
        finally:
            llm.close()

    def med(way: str, key: str) -> float:
        values = [r[key] for r in rows[way] if r.get(key) is not None]
        return statistics.median(values) if values else float("nan")

    ratios = [e["prompt_tokens"] / w["prompt_tokens"] for e, w in zip(rows["evidence"], rows["whole chunks"],
                                                                       strict=True) if w["prompt_tokens"]]
    summary: dict[str, Any] = {
        "questions": n, "load_average_1min": os.getloadavg()[0], "model": settings.model,
        "medians": {w: {k: med(w, k) for k in ("prompt_tokens", "model_ttft_ms", "shown_after_model_ms",
                                               "total_ms")} for w in WAYS},
        "prompt_token_ratio_median": statistics.median(ratios) if ratios else float("nan"),
        "shown_within_1s": sum(1 for r in rows["evidence"] if (r["shown_after_model_ms"] or 0) <= 1000)
        / max(1, len(rows["evidence"])),
        "rows": rows,
    }
    m = summary["medians"]
    summary["readme"] = [
        {"measure": f"KB answer prompt tokens, evidence sentences ({settings.model})",
         "value": m["evidence"]["prompt_tokens"], "baseline": f"{m['whole chunks']['prompt_tokens']:.0f} (whole chunks)"},
        {"measure": "KB answer model TTFT, ms, evidence sentences", "value": m["evidence"]["model_ttft_ms"],
         "baseline": f"{m['whole chunks']['model_ttft_ms']:.0f} (whole chunks)"},
        {"measure": "first answer text shown after the model's first token, ms (check on)",
         "value": m["evidence"]["shown_after_model_ms"], "baseline": "target <= 1000"},
    ]
    save_area(out_dir, "answers", summary, lambda png: _plot(summary, png))
    return summary


def _plot(summary: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = summary["medians"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
    for ax, key, label in ((axes[0], "prompt_tokens", "prompt tokens (median)"),
                           (axes[1], "model_ttft_ms", "model time to first token, ms (median)")):
        values = [m[w][key] for w in WAYS]
        bars = ax.bar(list(WAYS), values, color=["#4c72b0", "#999999"])
        for bar, v in zip(bars, values, strict=True):
            ax.text(bar.get_x() + bar.get_width() / 2, v, f"{v:.0f}", ha="center", va="bottom")
        ax.set_title(label)
    fig.suptitle(f"KB answers, {summary['questions']} questions (EN + ZH), {summary['model']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    import sys

    print(json.dumps(run("--quick" in sys.argv, Path(__file__).parent / "results")["medians"], indent=1))
