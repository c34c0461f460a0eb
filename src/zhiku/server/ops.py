"""/health and /metrics (Prometheus text format).

Each app gets its own CollectorRegistry, so two apps in one process (tests, an upstream and a proxy)
never share or clash over metrics. The numbers are read from LLMService.stats() at scrape time; the
service itself needs no metrics library.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from zhiku import __version__
from zhiku.server.deps import get_services
from zhiku.services import Services

router = APIRouter(tags=["ops"])

_COUNTERS = {
    "requests_total": ("zhiku_llm_requests", "generation requests received"),
    "requests_rejected_total": ("zhiku_llm_requests_rejected", "requests refused with 503 (queue full)"),
    "requests_cancelled_total": ("zhiku_llm_requests_cancelled", "generations stopped early by the client"),
    "requests_failed_total": ("zhiku_llm_requests_failed", "requests that ended in an error"),
    "prompt_tokens_total": ("zhiku_llm_prompt_tokens", "prompt tokens processed (tokens in)"),
    "completion_tokens_total": ("zhiku_llm_completion_tokens", "completion tokens generated (tokens out)"),
}


class LLMCollector(Collector):
    def __init__(self, services: Services) -> None:
        self.services = services

    def collect(self) -> Iterator[Metric]:
        st = self.services.llm.stats()
        for key, (name, doc) in _COUNTERS.items():
            yield CounterMetricFamily(name, doc, value=st[key])
        yield GaugeMetricFamily("zhiku_llm_queue_depth", "requests waiting for a slot", value=st["queue_depth"])
        yield GaugeMetricFamily("zhiku_llm_active_slots", "slots generating now", value=st["active"])
        yield GaugeMetricFamily("zhiku_llm_decoding_slots", "slots past their request's first token",
                                value=st["decoding"])
        yield GaugeMetricFamily("zhiku_llm_slots", "generation slots", value=st["parallel"])
        for key, name, doc in (
            ("ttft_seconds", "zhiku_llm_time_to_first_token_seconds", "request arrival to first token"),
            ("decode_tokens_per_second", "zhiku_llm_decode_tokens_per_second", "decode speed per request"),
        ):
            h = st[key]
            yield HistogramMetricFamily(name, doc, buckets=h["buckets"], sum_value=h["sum"])


def _registry(request: Request, services: Services) -> CollectorRegistry:
    registry: CollectorRegistry | None = getattr(request.app.state, "metrics_registry", None)
    if registry is None:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(LLMCollector(services))
        request.app.state.metrics_registry = registry
    return registry


@router.get("/health")
def health(services: Services = Depends(get_services)) -> dict[str, Any]:
    llm = services.llm
    return {"status": "ok", "version": __version__,
            "model": llm.model_id, "backend": services.settings.llm_backend, "loaded": llm.started}


@router.get("/metrics")
def metrics(request: Request, services: Services = Depends(get_services)) -> Response:
    return Response(generate_latest(_registry(request, services)), media_type=CONTENT_TYPE_LATEST)
