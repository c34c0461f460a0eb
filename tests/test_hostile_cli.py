"""`zhiku kb` rough edges found as a new user (issue 16 items 1 and 7), run as subprocesses the way a user
runs them: readable dates, "unchanged" on a re-add, one name twice in one `kb add`; and the build metadata."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
import warnings
from datetime import datetime
from pathlib import Path

from test_hostile_disk import documents

REPO = Path(__file__).resolve().parents[1]


def zhiku_kb(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ZHIKU_HOME": str(home), "ZHIKU_EMBEDDER": "use-m3", "COLUMNS": "200"}
    out = subprocess.run([sys.executable, "-m", "zhiku", "kb", *args], env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    return out


def test_show_re_add_and_one_name_twice(home: Path, tmp_path: Path) -> None:
    for folder, text in (("north", "The north gate opens at six."), ("south", "The south gate opens at nine.")):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "gate.txt").write_text(text)
    # Two names that clean to one inside a folder: "a:b.txt" becomes "a_b.txt".
    (tmp_path / "north" / "a:b.txt").write_text("Colon in the name.")
    (tmp_path / "north" / "a_b.txt").write_text("Underscore in the name.")
    zhiku_kb(home, "create", "gates")
    first = zhiku_kb(home, "add", "gates", str(tmp_path / "north" / "gate.txt"), str(tmp_path / "south" / "gate.txt"),
                     "--quiet").stdout
    assert "gate.txt: ok" in first and "gate (2).txt: ok" in first, first
    assert set(documents(home / "zhiku.db")) == {"gate.txt", "gate (2).txt"}
    again = zhiku_kb(home, "add", "gates", str(tmp_path / "north" / "gate.txt"), str(tmp_path / "south" / "gate.txt"),
                     "--quiet").stdout
    assert "gate.txt: unchanged" in again and "gate (2).txt: unchanged" in again and ": ok" not in again, again
    synced = zhiku_kb(home, "sync", "gates", str(tmp_path / "north"), "--quiet").stdout
    assert "added: 2" in synced, synced
    assert {"a_b.txt", "a_b (2).txt"} <= set(documents(home / "zhiku.db"))

    shown = zhiku_kb(home, "show", "gates").stdout
    created = next(line for line in shown.splitlines() if line.startswith("created: ")).split(": ", 1)[1]
    assert datetime.strptime(created, "%Y-%m-%d %H:%M:%S").date() == datetime.now().date(), created
    assert "expires_at: -" in shown


def test_project_license_is_an_spdx_string() -> None:
    """setuptools deprecates `license = {text = ...}`; the SPDX string form builds without that warning."""
    from setuptools.config.pyprojecttoml import apply_configuration
    from setuptools.dist import Distribution

    meta = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert meta["project"]["license"] == "Apache-2.0"
    with warnings.catch_warnings(record=True) as seen:  # what the build backend does with pyproject.toml
        warnings.simplefilter("always")
        dist = apply_configuration(Distribution(), REPO / "pyproject.toml")
    assert not [w for w in seen if "license" in str(w.message).lower()], [str(w.message) for w in seen]
    assert dist.metadata.license_expression == "Apache-2.0"
