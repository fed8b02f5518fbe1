"""Liveness, readiness and metrics."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from api.deps import MetricsDep, ServicesDep
from api.http.openapi import READY_RESPONSES, Health, metrics_responses
from api.metrics import GatewayMetrics

router = APIRouter(tags=["operations"])


@router.get("/health", response_model=Health, summary="Liveness: 200 while the process is alive")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/ready",
    response_model=None,
    responses=READY_RESPONSES,
    summary="Readiness: 200 only when every dependency and at least one worker are ready",
)
async def ready(services: ServicesDep) -> JSONResponse:
    checks = await services.readiness()
    is_ready = all(state == "ok" for state in checks.values())
    return JSONResponse({"ready": is_ready, "checks": checks}, status_code=200 if is_ready else 503)


@router.get(
    "/metrics",
    response_class=Response,
    responses=metrics_responses(GatewayMetrics.content_type),
    summary="Prometheus metrics of this gateway",
)
async def metrics(gateway_metrics: MetricsDep) -> Response:
    return Response(gateway_metrics.render(), media_type=gateway_metrics.content_type)
