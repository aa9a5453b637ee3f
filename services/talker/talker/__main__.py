"""`python -m talker`: the API on TALKER_HOST:TALKER_PORT, metrics also on TALKER_METRICS_PORT when set."""

from __future__ import annotations

import importlib.util
import logging
import sys

import uvicorn
from prometheus_client import start_http_server

from talker.app import create_app
from talker.logs import configure_logging
from talker.settings import get_settings

SWITCH_INTERVAL_S = 0.0005


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
    _warn_without_c_parts()
    # A synthesis thread coming back from espeak-ng (its callbacks, its return) waits for the event loop to hand
    # over the GIL; Python's default lets the loop keep it for up to 5 ms, longer than a short sentence takes to
    # synthesize. 0.5 ms keeps the synthesizer busier (bench/bench_tts_bare.py, two paired runs: 0.55 -> 0.73 and
    # 0.57 -> 0.62 of the bare engine's rate).
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        # "auto" takes uvloop and httptools (pinned dependencies) when installed; see _warn_without_c_parts.
        loop="auto",
        http="auto",
        log_config=None,  # keep our JSON logging
        access_log=False,  # RequestObserver writes one richer line per request
        timeout_graceful_shutdown=5,
    )


def _warn_without_c_parts() -> None:
    # An environment installed before they were pinned still starts (uvicorn falls back to asyncio and h11),
    # but each request then costs about 1 ms more CPU (bench/bench_tts_bare.py): say so once.
    missing = [name for name in ("uvloop", "httptools") if importlib.util.find_spec(name) is None]
    if missing:
        logging.getLogger("talker").warning(
            "uvicorn runs without %s (pure-Python fallback, slower): reinstall the locked dependencies",
            " and ".join(missing),
        )


if __name__ == "__main__":
    main()
