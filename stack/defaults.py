"""Where each service of the stack listens, and the defaults compose, `make dev` and `make smoke` share.

The one place for these facts. Python reads them from here: the config renderer (stack.config_render, the
addresses in the committed prometheus/ and alertmanager/ configs), `make dev` (devtools.devstack: the same
ports on 127.0.0.1), `make smoke` (stack.smoke.Endpoints, for both), `make load` and the mail sink. YAML cannot
import Python, so docker-compose*.yml and .env.example repeat some of them; tests/stack_tests/
test_stack_defaults.py fails when a repeated copy disagrees with this file.

Standard library only: config-init and the smoke container run it in the relay image.
"""

from __future__ import annotations

from dataclasses import dataclass

# `make dev` runs every service on this host, on the ports below (or free ones, `--ports auto`).
LOCAL_HOST = "127.0.0.1"
# Zone of the times in DingTalk messages (the relay's RELAY_TIMEZONE) and alert e-mails (Alertmanager's TZ);
# compose and .env.example call it ALERT_TIMEZONE.
ALERT_TIMEZONE = "Asia/Shanghai"


@dataclass(frozen=True)
class Listener:
    """One port a service listens on: `host` is the name other containers reach it by in compose."""

    host: str
    port: int
    service: str = ""  # the compose service, when it differs from host (a network alias)

    @property
    def compose_service(self) -> str:
        return self.service or self.host

    @property
    def address(self) -> str:
        """host:port on the compose networks."""
        return f"{self.host}:{self.port}"

    def compose_url(self, path: str = "") -> str:
        return f"http://{self.address}{path}"

    def local_url(self, path: str = "") -> str:
        """Where `make dev` serves it (with its default ports)."""
        return f"http://{LOCAL_HOST}:{self.port}{path}"


# Keyed like devtools.devstack.StackPorts. The same port in compose and in `make dev`.
LISTENERS: dict[str, Listener] = {
    "talker": Listener("talker", 8000),  # API; compose publishes it through talker-lb on the same port
    "talker_metrics": Listener("talker", 8001),
    "relay": Listener("dingtalk-relay", 8060),
    "dingtalk": Listener("dingtalk-standin", 8070),  # the DingTalk stand-in: robot API + inbox
    "smtp": Listener("mailpit", 1025),
    "mail_http": Listener("mailpit", 8025),  # Mailpit's UI and API (devtools.mailsink in `make dev`)
    "prometheus": Listener("prometheus-web", 9090, service="prometheus"),  # its `monitoring` alias alone
    "alertmanager": Listener("alertmanager", 9093),
    "node_exporter": Listener("node-exporter", 9100),
    "dcgm_exporter": Listener("dcgm-exporter", 9400),  # GPU overlay only
    "grafana": Listener("grafana", 3000),  # compose only
    # Conversation stand-ins (issue 11): `make dev` runs the LLM stand-in when no TALKER_LLM_BASE_URL is set;
    # talker's TALKER_LLM_BASE_URL default and llm_standin's / asr_standin's default ports say the same.
    "llm": Listener("llm-standin", 8091),
    "asr": Listener("asr-standin", 8090),
    # The real LLM server of the compose profile `llm` (llama.cpp's llama-server, or vLLM on the GPU overlay):
    # its OpenAI API under /v1 and Prometheus metrics at /metrics, on one port.
    "llm_server": Listener("llm", 8080),
}
