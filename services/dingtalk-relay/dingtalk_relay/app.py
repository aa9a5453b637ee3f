"""The FastAPI application factory: wires settings, the runtime and the routes together (composition root only)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI

from dingtalk_relay import __version__, api
from dingtalk_relay.errors import install_error_handlers
from dingtalk_relay.logs import quiet_http_client_logs
from dingtalk_relay.runtime import RelayRuntime
from dingtalk_relay.settings import RelaySettings


def create_app(settings: RelaySettings | None = None, *, transport: httpx.AsyncBaseTransport | None = None) -> FastAPI:
    """The relay app; `transport` lets tests route DingTalk calls somewhere without a network."""
    runtime = RelayRuntime(settings or RelaySettings())
    runtime.load()
    quiet_http_client_logs()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async with httpx.AsyncClient(transport=transport, follow_redirects=False) as http:
            runtime.start(http)
            try:
                yield
            finally:
                await runtime.stop()

    app = FastAPI(title="dingtalk-relay", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.runtime = runtime
    install_error_handlers(app)
    app.include_router(api.probes)
    app.include_router(api.webhooks)
    return app
