"""A running talker as the tests see it: its URLs, its metrics, its fault switch."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import httpx

from stack.procs import ManagedProcess, poll_until
from stack.prometheus_text import sample_values

ADMIN_TOKEN = "test-admin-token"
REQUEST_TIMEOUT_S = 3.0
# The streaming server (conftest's stream_talker): a write timeout and an audio limit cheap to reach.
WRITE_TIMEOUT_S = 1.0
MAX_AUDIO_S = 75.0
# The `secured` server (conftest.py): API keys, the same write timeout, a higher audio limit.
API_KEY = "key-alpha-5b1f0c"
FILE_API_KEY = "key-beta-9d2e7a"
SECURED_MAX_AUDIO_S = 100


@dataclass
class TalkerServer:
    url: str
    metrics_url: str
    tmpdir: Path
    proc: ManagedProcess

    def client(self, timeout: float = 30.0) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=timeout)

    def scrape(self) -> str:
        response = httpx.get(self.metrics_url, timeout=10)
        response.raise_for_status()
        return response.text

    def samples(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        """{(sample name, labels): value} of the current exposition."""
        return sample_values(self.scrape())

    def value(self, name: str, **labels: str) -> float:
        return self.samples().get((name, frozenset(labels.items())), 0.0)

    def set_faults(self, **faults: object) -> None:
        response = httpx.post(f"{self.url}/admin/faults", json=faults, headers=admin_headers(), timeout=10)
        assert response.status_code == 200, response.text

    def clear_faults_and_drain(self) -> None:
        """Remove every fault and wait until no job holds a slot, so the next test starts clean."""
        response = httpx.delete(f"{self.url}/admin/faults", headers=admin_headers(), timeout=10)
        assert response.status_code == 200, response.text
        poll_until(
            lambda: self.value("talker_active_sessions") == 0 and self.value("talker_queue_depth") == 0,
            timeout=REQUEST_TIMEOUT_S * 3,
            what="talker slots to drain",
        )


def admin_headers(token: str = ADMIN_TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
