"""The built-in embedders (e5-small, use-m3), the registry and batching, on the real models."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from zhiku.config import Settings
from zhiku.embed import registry
from zhiku.embed.base import Embedder, EmbedderError
from zhiku.embed.batching import embed_in_batches, raw_throughput
from zhiku.embed.e5 import E5Embedder
from zhiku.embed.parallel import shards
from zhiku.embed.use_m3 import USEEmbedder

EN = ["The cat is sleeping on the sofa.", "A kitten naps on the couch.", "Stock prices fell sharply today."]
ZH = ["猫", "小猫", "股票"]
ZH_SENT = ["猫在沙发上睡觉。", "小猫在长椅上打盹。", "今天股市大幅下跌。"]


@pytest.fixture(scope="module")
def cfg(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(home=tmp_path_factory.mktemp("home"), embed_threads=2)


@pytest.fixture(scope="module", params=["e5-small", "use-m3"])
def builtin(request: pytest.FixtureRequest, cfg: Settings) -> Embedder:
    return registry.get_embedder(request.param, cfg)


def _assert_unit_rows(v: np.ndarray, n: int, dim: int) -> None:
    assert v.dtype == np.float32 and v.shape == (n, dim) and v.flags["C_CONTIGUOUS"]
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)


def test_builtin_shapes_and_norms(builtin: Embedder) -> None:
    dims = {"e5-small": 384, "use-m3": 512}
    assert builtin.dim == dims[builtin.id]
    _assert_unit_rows(builtin.embed_passages(EN + ZH_SENT), 6, builtin.dim)
    _assert_unit_rows(builtin.embed_queries(["猫"]), 1, builtin.dim)
    assert builtin.embed_passages([]).shape == (0, builtin.dim)


@pytest.mark.parametrize("texts", [EN, ZH, ZH_SENT], ids=["en", "zh-words", "zh-sentences"])
def test_related_closer_than_unrelated(builtin: Embedder, texts: list[str]) -> None:
    q = builtin.embed_queries([texts[0]])[0]
    related, unrelated = builtin.embed_passages(texts[1:]) @ q
    assert related > unrelated + 0.05, (related, unrelated)


def test_e5_query_and_passage_prefixes_differ(cfg: Settings) -> None:
    e5 = registry.get_embedder("e5-small", cfg)
    q, p = e5.embed_queries(["猫"])[0], e5.embed_passages(["猫"])[0]
    assert float(q @ p) < 0.995  # different prefixes -> different vectors, still close
    assert float(q @ p) > 0.8


MIXED = [f"第{i}段：{'长' * (i * 7 % 30)} paragraph {i} {'word ' * (i % 5)}" for i in range(10)]


def test_e5_parallel_split_matches_one_call() -> None:
    """Two single-threaded engine calls on cost-balanced shards give the rows of one call, in order."""
    parallel, serial = E5Embedder(threads=2, workers=2), E5Embedder(threads=2, workers=1)
    np.testing.assert_allclose(parallel.embed_passages(MIXED), serial.embed_passages(MIXED), atol=1e-5)
    parallel.close()


def test_use_parallel_split_matches_one_call(cfg: Settings) -> None:
    use = registry.get_embedder("use-m3", cfg)
    assert isinstance(use, USEEmbedder) and use.threads == 2
    one_call = use._call(MIXED)  # the unsplit path, on the same loaded model
    np.testing.assert_allclose(use.embed_passages(MIXED), one_call, atol=1e-5)


def test_use_holds_blas_at_one_thread_in_workers(cfg: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two BLAS threads per call spend ~4x the CPU per passage on a busy box; limits set from a worker
    thread are ignored by threadpoolctl unless made the way use_m3 makes them."""
    from threadpoolctl import threadpool_info

    use = registry.get_embedder("use-m3", cfg)
    assert isinstance(use, USEEmbedder)
    blas = lambda: {i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}  # noqa: E731
    before, seen = blas(), []
    encode = use._load().encode
    monkeypatch.setattr(use._load(), "encode", lambda texts: (seen.append((threading.current_thread().name,
                                                                          blas())), encode(texts))[1])
    use.embed_passages(MIXED)
    assert len(seen) == 2 and all(name.startswith("zhiku-use") and n == {1} for name, n in seen), seen
    assert blas() == before


def test_shards_balance_cost_in_order() -> None:
    texts = ["中" * 300, "a", "b", "c", "d" * 100, "e" * 400, "f"]
    ranges = shards(texts, 2)
    assert ranges == [(0, 1), (1, 7)]  # 300 CJK characters cost about as much as 500 ASCII ones
    assert shards(["x"], 2) == [(0, 1)] and shards(["x", "y"], 1) == [(0, 2)]
    many = shards([f"t{i}" for i in range(9)], 4)
    assert [a for a, _ in many] == [0] + [b for _, b in many[:-1]] and many[-1][1] == 9 and len(many) == 4


def test_embed_in_batches_progress_and_order(cfg: Settings) -> None:
    use = registry.get_embedder("use-m3", cfg)
    texts = [f"sentence {i} about topic {i % 3}" for i in range(10)]
    seen: list[tuple[int, int]] = []
    out = embed_in_batches(use, texts, batch_size=4, progress=lambda d, t: seen.append((d, t)))
    assert seen == [(0, 10), (4, 10), (8, 10), (10, 10)]
    np.testing.assert_allclose(out, use.embed_passages(texts), atol=1e-5)
    assert embed_in_batches(use, []).shape == (0, 512)


def test_raw_throughput_reports_rate(cfg: Settings) -> None:
    stats = raw_throughput(registry.get_embedder("use-m3", cfg), [f"text {i}" for i in range(20)])
    assert stats["passages"] == 20 and stats["passages_per_s"] > 0


@pytest.mark.parametrize("spec,message", [
    ("x", "unknown embedder 'x': use e5-small, use-m3, st:<folder>, gguf:<file>, openai:<model>"),
    ("bge:foo", "unknown embedder 'bge:foo'"),
    ("st:", "needs a value after 'st:'"),
    ("", "unknown embedder ''"),
])
def test_bad_specs(spec: str, message: str) -> None:
    with pytest.raises(EmbedderError, match=message.replace("(", r"\(").replace(")", r"\)")):
        registry.parse_spec(spec)


def test_spec_parsing_and_ids(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert registry.parse_spec(" e5-small ") == ("e5-small", "")
    assert registry.parse_spec("openai:text-embedding-3-small") == ("openai", "text-embedding-3-small")
    assert registry.parse_spec("gguf:/m/a.gguf") == ("gguf", "/m/a.gguf")
    monkeypatch.chdir(tmp_path)
    assert registry.embedder_id("st:models/minilm") == f"st:{tmp_path / 'models' / 'minilm'}"
    assert registry.embedder_id("gguf:./x.gguf") == f"gguf:{tmp_path / 'x.gguf'}"
    assert registry.embedder_id("gguf:smollm2-135m") == "gguf:smollm2-135m"  # a model pack name stays
    assert registry.embedder_id("use-m3") == "use-m3"


def test_get_embedder_cached_and_thread_safe(cfg: Settings) -> None:
    got: list[Embedder] = []
    threads = [threading.Thread(target=lambda: got.append(registry.get_embedder("use-m3", cfg))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(e) for e in got}) == 1
    assert got[0] is registry.get_embedder("use-m3", cfg)
    assert got[0].id == "use-m3"


def test_missing_files_are_clear_errors(cfg: Settings, tmp_path) -> None:
    with pytest.raises(EmbedderError, match="folder not found"):
        registry.get_embedder(f"st:{tmp_path / 'nope'}", cfg)
    with pytest.raises(EmbedderError, match="not found"):
        registry.get_embedder(f"gguf:{tmp_path / 'nope.gguf'}", cfg)
    with pytest.raises(EmbedderError, match="needs an upstream"):
        registry.get_embedder("openai:some-model", cfg)
