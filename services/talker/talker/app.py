"""The FastAPI application factory: wires settings, engines, metrics and routes together."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from talker import __version__, api, chat_ws, openai_api
from talker.engine_contract import PipelineLike
from talker.errors import install_error_handlers
from talker.gpu import GpuCollector, TorchCudaMemory
from talker.metrics import TalkerMetrics
from talker.observe import RequestObserver
from talker.service import TalkerService
from talker.settings import Settings, get_settings

log = logging.getLogger("talker.app")


def create_app(settings: Settings | None = None, pipeline: PipelineLike | None = None) -> FastAPI:
    """Build the app. Engines load in the background once the app starts (see /readyz)."""
    settings = settings or get_settings()
    if pipeline is None:
        from talker.pipeline import Pipeline  # imports torch; keep `import talker.app` light

        pipeline = Pipeline(settings)
    metrics = TalkerMetrics(tts_engine=settings.tts_engine)
    gpu = GpuCollector(torch_memory=TorchCudaMemory())
    metrics.registry.register(gpu)
    service = TalkerService(settings, pipeline, metrics)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        service.start_loading()
        try:
            yield
        finally:
            service.shutdown()
            await service.aclose()
            gpu.shutdown()

    app = FastAPI(
        title="talker",
        version=__version__,
        description="Text -> speech -> talking-head video, instrumented for Prometheus.",
        lifespan=lifespan,
        docs_url=None,  # Swagger UI loads from a CDN; the service must work offline. /openapi.json stays.
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.service = service
    app.state.metrics = metrics

    install_error_handlers(app, count_rejection=service.count_rejection)
    app.include_router(api.probes)
    app.include_router(api.v1)
    app.include_router(openai_api.router)
    app.include_router(chat_ws.router)
    app.include_router(api.admin)
    if settings.serve_metrics_on_api_port:
        app.include_router(api.metrics_router)
    elif settings.metrics_port is None:
        log.warning("metrics are served nowhere: TALKER_METRICS_ON_API_PORT=false and no TALKER_METRICS_PORT")
    app.include_router(api.demo)
    app.mount("/static", StaticFiles(directory=api.STATIC_DIR), name="static")
    app.add_middleware(RequestObserver, metrics=metrics, count_rejection=service.count_rejection,
                       record_metrics=settings.metrics_enabled)
    return app
