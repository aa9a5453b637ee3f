"""`make smoke` on a broken alert path: it names the hop that failed, shows the evidence and exits 1."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from dingtalk_standin.server import DingTalkStandin, Robot

from devtools.mailsink import MailSink
from stack import smoke
from stack.config_render import render
from stack.procs import ManagedProcess, free_port, wait_http

pytestmark = pytest.mark.e2e


def smoke_argv(urls: dict[str, str]) -> list[str]:
    return [arg for name, url in urls.items() for arg in (f"--{name}", url)] + ["--timeout", "8"]


def test_stack_smoke_names_the_unreachable_mailbox(capsys: pytest.CaptureFixture[str]) -> None:
    nowhere = {name: f"http://127.0.0.1:{free_port()}" for name in
               ("talker", "prometheus", "alertmanager", "relay", "dingtalk", "mailpit")}
    assert smoke.main(smoke_argv(nowhere)) == 1
    err = capsys.readouterr().err
    assert "FAILED at hop: email (Mailpit API) reachable" in err and nowhere["mailpit"] in err, err


@pytest.fixture
def path_without_relay(tmp_path: Path) -> Iterator[dict[str, str]]:
    """Real Alertmanager, mail sink and DingTalk stand-in; the relay Alertmanager calls is not running."""
    am_port, smtp_port, mail_port, relay_port = free_port(), free_port(), free_port(), free_port()
    token_file = tmp_path / "relay_webhook_token"
    token_file.write_text("smoke-failures-webhook-token\n")
    env = {"RELAY_WEBHOOK_TOKEN_FILE": str(token_file)}
    rendered = render(tmp_path / "config", profile="fast", env=env, addresses={
        "alertmanager": f"127.0.0.1:{am_port}", "mailpit": f"127.0.0.1:{smtp_port}",
        "dingtalk-relay": f"127.0.0.1:{relay_port}",
    })
    dingtalk = DingTalkStandin([Robot("smoke-robot")])
    dingtalk.start()
    am = ManagedProcess("alertmanager", [
        "prometheus-alertmanager", f"--config.file={rendered.alertmanager_config}",
        f"--storage.path={tmp_path / 'am-data'}", f"--web.listen-address=127.0.0.1:{am_port}",
        *rendered.alertmanager_args,
    ], log_dir=tmp_path / "logs")
    try:
        with MailSink("127.0.0.1", smtp_port, mail_port):
            am.start()
            wait_http(f"http://127.0.0.1:{am_port}/-/ready", timeout=30, proc=am)
            yield {"talker": f"http://127.0.0.1:{free_port()}", "prometheus": f"http://127.0.0.1:{free_port()}",
                   "alertmanager": f"http://127.0.0.1:{am_port}", "relay": f"http://127.0.0.1:{relay_port}",
                   "dingtalk": dingtalk.base_url, "mailpit": f"http://127.0.0.1:{mail_port}"}
    finally:
        am.stop()
        dingtalk.stop()


def test_stack_smoke_names_the_dingtalk_hop_and_shows_relay_and_alertmanager_evidence(
    path_without_relay: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert smoke.main(smoke_argv(path_without_relay)) == 1
    captured = capsys.readouterr()
    assert "ok  Alertmanager has the alert" in captured.out
    assert "FAILED at hop: DingTalk (stand-in inbox)" in captured.err, captured.err
    assert f"relay metrics unavailable: GET {path_without_relay['relay']}/metrics" in captured.err
    assert "Alertmanager webhook notifications:" in captured.err
