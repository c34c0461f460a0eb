"""An OpenAI-compatible `/v1/embeddings` upstream (`openai:<model>`): Ollama, vLLM, llama-server, TEI, zhiku."""

from __future__ import annotations

import threading

import numpy as np

from zhiku.embed.base import EmbedderError, Vectors, l2_normalise

# Inputs per request: most servers accept far more, but some cap a request at 64-256 inputs.
REQUEST_BATCH = 64


class OpenAIEmbedder:
    """Rows come back re-normalised: not every server returns unit vectors."""

    batch_size = REQUEST_BATCH

    def __init__(self, model: str, base_url: str, api_key: str = "", timeout: float = 120.0) -> None:
        if not model:
            raise EmbedderError("openai:<model> needs a model name, e.g. openai:nomic-embed-text")
        if not base_url:
            raise EmbedderError(
                f"embedder openai:{model} needs an upstream: set embed_base_url (ZHIKU_EMBED_BASE_URL) "
                "or upstream_base_url to the server's /v1 address")
        from openai import OpenAI

        self.id = f"openai:{model}"
        self.model = model
        self.base_url = base_url
        # The official client retries 429/5xx itself; an unset key is sent as a placeholder, as local servers expect.
        self._client = OpenAI(base_url=base_url, api_key=api_key or "not-needed", timeout=timeout, max_retries=2)
        self._dim = 0
        self._lock = threading.Lock()

    @property
    def dim(self) -> int:
        if not self._dim:
            self._request(["dimension probe"])
        return self._dim

    def _request(self, texts: list[str]) -> Vectors:
        import openai

        try:
            resp = self._client.embeddings.create(model=self.model, input=texts, encoding_format="float")
        except openai.APIError as exc:
            raise EmbedderError(f"embedding upstream {self.base_url} failed for model {self.model}: {exc}") from exc
        data = sorted(resp.data, key=lambda d: d.index)
        if len(data) != len(texts):
            raise EmbedderError(f"embedding upstream returned {len(data)} vectors for {len(texts)} inputs")
        rows = l2_normalise([d.embedding for d in data])
        with self._lock:
            if not self._dim:
                self._dim = rows.shape[1]
        if rows.shape[1] != self._dim:
            raise EmbedderError(f"embedding upstream changed dimension: {rows.shape[1]} != {self._dim}")
        return rows

    def _encode(self, texts: list[str]) -> Vectors:
        if not texts:
            return np.empty((0, self.dim), dtype=np.float32)
        parts = [self._request(texts[i:i + REQUEST_BATCH]) for i in range(0, len(texts), REQUEST_BATCH)]
        return np.concatenate(parts)

    def embed_passages(self, texts: list[str]) -> Vectors:
        return self._encode(texts)

    def embed_queries(self, texts: list[str]) -> Vectors:
        return self._encode(texts)

    def close(self) -> None:
        self._client.close()
