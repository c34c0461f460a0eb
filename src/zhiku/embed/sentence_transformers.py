"""Any sentence-transformers model in a local folder (`st:<folder>`; extra `zhiku[st]`, CPU torch)."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from zhiku.embed.base import EmbedderError, Vectors, l2_normalise


def check_folder(folder: Path) -> Path:
    """The folder, resolved, if it looks like a saved sentence-transformers or transformers model."""
    folder = folder.expanduser().resolve()
    if not folder.is_dir():
        raise EmbedderError(f"sentence-transformers model folder not found: {folder}")
    if not ((folder / "modules.json").is_file() or (folder / "config.json").is_file()):
        raise EmbedderError(f"{folder} is not a sentence-transformers model folder (no modules.json or config.json)")
    return folder


class SentenceTransformerEmbedder:
    """`st:<folder>`: the model's own prompts are used for queries / passages when it defines them."""

    batch_size = 32

    def __init__(self, folder: Path, threads: int = 0) -> None:
        self.folder = check_folder(folder)
        self.id = f"st:{self.folder}"
        self.threads = threads or os.cpu_count() or 1
        self._lock = threading.Lock()
        self._model: Any = None
        self._dim = 0

    def _load(self) -> Any:
        with self._lock:
            if self._model is None:
                # Never reach for the Hugging Face hub: the folder must hold everything.
                os.environ["HF_HUB_OFFLINE"] = "1"
                os.environ["TRANSFORMERS_OFFLINE"] = "1"
                try:
                    import torch
                    from sentence_transformers import SentenceTransformer
                except ImportError as exc:
                    raise EmbedderError(
                        "st:<folder> embedders need the sentence-transformers extra: pip install 'zhiku[st]'"
                    ) from exc
                torch.set_num_threads(self.threads)
                try:
                    model = SentenceTransformer(str(self.folder), device="cpu", local_files_only=True)
                except Exception as exc:  # a broken folder fails in many library-specific ways
                    raise EmbedderError(f"cannot load sentence-transformers model {self.folder}: {exc}") from exc
                # renamed in sentence-transformers 5: prefer the new name, keep working with 3.x / 4.x
                get_dim = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
                self._dim = int(get_dim() or 0)
                self._model = model
            return self._model

    @property
    def dim(self) -> int:
        self._load()
        return self._dim

    def _prompt(self, kinds: tuple[str, ...]) -> str | None:
        prompts = getattr(self._model, "prompts", None) or {}
        return next((k for k in kinds if prompts.get(k)), None)

    def _encode(self, texts: list[str], prompt_kinds: tuple[str, ...]) -> Vectors:
        model = self._load()
        if not texts:
            return np.empty((0, self._dim), dtype=np.float32)
        with self._lock:  # torch is thread-safe, but two calls would only fight over the same cores
            rows = model.encode(list(texts), batch_size=self.batch_size, convert_to_numpy=True,
                                normalize_embeddings=True, show_progress_bar=False,
                                prompt_name=self._prompt(prompt_kinds))
        return l2_normalise(rows, self._dim)

    def embed_passages(self, texts: list[str]) -> Vectors:
        return self._encode(texts, ("document", "passage"))

    def embed_queries(self, texts: list[str]) -> Vectors:
        return self._encode(texts, ("query",))
