"""`python -m dingtalk_relay`: serve the relay with uvicorn on RELAY_HOST:RELAY_PORT."""

from __future__ import annotations

import uvicorn

from .app import create_app
from .logs import configure_logging
from .settings import RelaySettings


def main() -> None:
    settings = RelaySettings()
    configure_logging(settings.log_level)
    app = create_app(settings)
    # log_config=None: uvicorn logs through our root handlers, which carry the secret-redacting filter.
    uvicorn.run(app, host=settings.host, port=settings.port, log_config=None, proxy_headers=False)


if __name__ == "__main__":
    main()
