"""What an operator sees about devices: /readyz and the metrics name the provider each engine really runs on."""

from __future__ import annotations

import httpx
from talker_app_tests.talker_server import TalkerServer


def test_talker_readyz_and_metrics_name_each_engines_real_provider(talker: TalkerServer) -> None:
    body = httpx.get(f"{talker.url}/readyz", timeout=10).json()
    assert body["engine_providers"] == {
        "espeak": ["cpu"],
        "piper": ["CPUExecutionProvider"],
        "renderer": ["cpu"],
    }
    assert body["cpu_fallback"] == {"espeak": False, "piper": False, "renderer": False}

    got = talker.samples()
    info = {dict(labels)["engine"]: dict(labels)["provider"]
            for (name, labels), value in got.items() if name == "talker_engine_info" and value == 1}
    assert info == {"espeak": "cpu", "piper": "CPUExecutionProvider", "renderer": "cpu"}
    for engine in ("espeak", "piper", "renderer"):
        assert talker.value("talker_engine_cpu_fallback", engine=engine) == 0
        assert ("talker_engine_cpu_fallback", frozenset({("engine", engine)})) in got  # present, not just absent
