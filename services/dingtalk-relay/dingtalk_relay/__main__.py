"""`python -m dingtalk_relay`: serve the relay with uvicorn on RELAY_HOST:RELAY_PORT."""

from __future__ import annotations

import logging
import sys

import uvicorn

from dingtalk_relay.app import create_app
from dingtalk_relay.auth import WebhookAuthError, load_webhook_auth
from dingtalk_relay.logs import configure_logging
from dingtalk_relay.settings import RelaySettings


def main() -> None:
    settings = RelaySettings()
    configure_logging(settings.log_level)
    try:
        load_webhook_auth(settings)  # nothing open by default: no token, no relay
    except WebhookAuthError as exc:
        logging.getLogger("dingtalk_relay").critical("refusing to start: %s", exc)
        sys.exit(2)
    app = create_app(settings)
    # log_config=None: uvicorn logs through our root handlers, which carry the secret-redacting filter.
    uvicorn.run(app, host=settings.host, port=settings.port, log_config=None, proxy_headers=False)


if __name__ == "__main__":
    main()
