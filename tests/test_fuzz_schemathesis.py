"""Schemathesis against zhiku's own OpenAPI schema (app.openapi()), on a real server with the real small model.

A bounded number of examples per operation, valid and invalid: no 5xx, and every documented response
matches its schema. max_tokens_cap is tiny so generated chat requests stay cheap (anything above the cap
is a 400, which is part of what is being checked).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings

from conftest import running
from zhiku.config import Settings
from zhiku.server.app import create_app

EXAMPLES = 10
CHECKS = [schemathesis.checks.not_a_server_error, schemathesis.checks.response_schema_conformance]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory, smollm_path: Path) -> Iterator[tuple[str, FastAPI]]:
    home = tmp_path_factory.mktemp("fuzz-home")
    s = Settings(home=home, model=str(smollm_path), ctx=512, parallel=2, threads=2, ui=False,
                 embedder="use-m3", max_tokens_cap=8, default_max_tokens=8, agent_max_steps=2,
                 search_timeout=1.0, searxng_url="http://127.0.0.1:9", max_upload_mb=1.0)
    app = create_app(s)
    with running(app) as base:
        # Something for the path parameters to hit besides 404s.
        app.state.services.kb.create("fuzz")
        app.state.services.kb.add_bytes("fuzz", "note.txt", b"The pilot boat leaves at dawn.")
        yield base, app


def openapi_document() -> dict[str, Any]:
    """The schema a fresh app publishes; built at collection (the routes do not depend on settings)."""
    with tempfile.TemporaryDirectory() as home:
        return create_app(Settings(home=Path(home), ui=False), preload=False).openapi()


# Loaded eagerly: schemathesis' lazy fixture loader does not work with pytest 9.
# The coverage phase (every boundary of every field, ~10x the requests) is left to `schemathesis run` by hand.
CONFIG = schemathesis.Config.from_dict({"phases": {"coverage": {"enabled": False}}})
schema = schemathesis.openapi.from_dict(openapi_document(), config=CONFIG)


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_openapi_operations(case: Any, fuzz_server: tuple[str, FastAPI]) -> None:
    base, _ = fuzz_server
    case.call_and_validate(base_url=base, checks=CHECKS, timeout=60)


def hostile(value: Any) -> Any:
    """The same body with every string carrying an unpaired surrogate and every boolean a string: what a
    broken client or a hostile one sends. Each must be a 4xx, never a 5xx."""
    if isinstance(value, bool):
        return "yes"
    if isinstance(value, str):
        return value + "\ud800"
    if isinstance(value, dict):
        return {k: hostile(v) for k, v in value.items()}
    if isinstance(value, list):
        return [hostile(v) for v in value]
    return value


@schema.parametrize()
@settings(max_examples=3, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_openapi_operations_with_surrogates_and_non_boolean_flags(case: Any,
                                                                  fuzz_server: tuple[str, FastAPI]) -> None:
    base, _ = fuzz_server
    if not isinstance(case.body, dict | list) or case.media_type != "application/json":
        return  # JSON bodies only: a surrogate cannot even be encoded into a URL or a multipart part
    body = hostile(case.body)
    # Sent by hand: schemathesis itself cannot encode a lone surrogate; json.dumps escapes it as \ud800.
    response = httpx.request(case.method, base + case.formatted_path, params=case.query or None,
                             content=json.dumps(body).encode(), timeout=60,
                             headers={**{k: str(v) for k, v in (case.headers or {}).items()},
                                      "Content-Type": "application/json"})
    what = (case.method, case.path, response.status_code, response.text[:300])
    assert response.status_code < 500, what
    if "\ud800" in json.dumps(body, ensure_ascii=False):
        assert response.status_code == 400 and "surrogate" in response.text, what
