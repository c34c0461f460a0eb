"""What the batching engine works with: a request and its sampling parameters, the sampler chain, the model.

The sampler chain is the one llama-cpp-python's `Llama.generate` builds for the same parameters (penalties,
grammar, then greedy or top-k/typical/top-p/min-p/temperature/seeded dist), so a request samples as it did
on the single-sequence path.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import llama_cpp
from llama_cpp import _internals as internals

from zhiku.llm.native import model_params


class EngineError(RuntimeError):
    pass


@dataclass
class Sampling:
    temperature: float = 0.0
    top_k: int = 40
    top_p: float = 1.0
    min_p: float = 0.05
    seed: int = 0
    seeded: bool = False  # the caller chose the seed (wants the same text every time)
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    grammar: str | None = None  # GBNF text, root rule "root"
    lookup: bool = False  # prompt-lookup drafting (used only where it cannot change the output: greedy, no grammar)
    probe: tuple[int, ...] = ()  # token ids whose log-probability at the first sampled position is recorded


@dataclass
class Finished:
    reason: str  # "stop" (end-of-generation token) | "length" (max_new reached)


class Request:
    """One generation. The consumer iterates `tokens()`; `cancel()` frees its sequence at the next step."""

    def __init__(self, tokens: list[int], sampling: Sampling, max_new: int) -> None:
        self.prompt = list(tokens)
        self.sampling = sampling
        self.max_new = max_new
        self.reused = 0  # prompt tokens found in the KV cache instead of evaluated
        self.drafted = 0  # draft tokens proposed / accepted (prompt lookup)
        self.accepted = 0
        self.probe_logprobs: list[float] | None = None  # of sampling.probe, set before the first token
        self._out: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.cancelled = threading.Event()

    def cancel(self) -> None:
        self.cancelled.set()

    def tokens(self) -> Iterator[int]:
        """Sampled tokens until the end; then `finish` says why. Raises what the engine raised."""
        while True:
            item = self._out.get()
            if isinstance(item, Finished):
                self.finish = item.reason
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    finish: str = "length"


def sampler_chain(model: internals.LlamaModel, p: Sampling) -> internals.LlamaSampler:
    """The chain Llama.generate builds for the same parameters, so outputs match the single-sequence path."""
    chain = internals.LlamaSampler()
    chain.add_penalties(n_vocab=model.n_vocab(), penalty_last_n=64, penalty_repeat=1.0,
                        penalty_freq=p.frequency_penalty, penalty_present=p.presence_penalty)
    if p.grammar is not None:
        g = llama_cpp.llama_sampler_init_grammar(model.vocab, p.grammar.encode(), b"root")
        if not g:
            chain.close()
            raise EngineError("llama.cpp could not parse the grammar")
        llama_cpp.llama_sampler_chain_add(chain.sampler, g)
    if p.temperature <= 0.0:
        chain.add_greedy()
    else:
        chain.add_top_k(p.top_k)
        chain.add_typical(1.0, 1)
        chain.add_top_p(p.top_p, 1)
        chain.add_min_p(p.min_p, 1)
        chain.add_temp(p.temperature)
        chain.add_dist(p.seed)
    return chain


def load_model(path: str) -> internals.LlamaModel:
    """Load a GGUF with mmap (several engines over one file share its pages), quietly."""
    from llama_cpp._logger import set_verbose

    set_verbose(False)
    llama_cpp.llama_backend_init()
    params = model_params(llama_cpp.llama_model_default_params())
    params.use_mmap = True
    return internals.LlamaModel(path_model=path, params=params, verbose=False)
