"""`python -m talker`: the API on TALKER_HOST:TALKER_PORT, metrics also on TALKER_METRICS_PORT when set."""

from __future__ import annotations

import logging

import uvicorn
from prometheus_client import start_http_server

from talker.app import create_app
from talker.logs import configure_logging
from talker.settings import get_settings


def main() -> None:
    settings = get_settings()
    configure_logging(settings.log_level)
    app = create_app(settings)
    if settings.metrics_port is not None:
        # A separate listener (a small threaded server from prometheus_client) lets a deployment expose
        # only this port to Prometheus, keeping metrics off the public API port.
        start_http_server(settings.metrics_port, addr=settings.host, registry=app.state.metrics.registry)
        logging.getLogger("talker").info(
            "metrics listening", extra={"host": settings.host, "port": settings.metrics_port}
        )
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        # The C event loop and HTTP parser (pinned dependencies): named, so a missing one fails at start
        # instead of silently costing ~1 ms of CPU per request on the pure-Python ones.
        loop="uvloop",
        http="httptools",
        log_config=None,  # keep our JSON logging
        access_log=False,  # RequestObserver writes one richer line per request
        timeout_graceful_shutdown=5,
    )


if __name__ == "__main__":
    main()
