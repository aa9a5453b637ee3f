"""The SMTP sink really receives mail over SMTP and shows it through the Mailpit API subset."""

from __future__ import annotations

import json
import smtplib
import urllib.request
from collections.abc import Iterator
from email.message import EmailMessage

import pytest

from devtools.mailsink import MailSink
from stack.alertpath import MailApi
from stack.http_client import request_json
from stack.procs import free_port


@pytest.fixture
def sink() -> Iterator[tuple[int, str]]:
    smtp_port, http_port = free_port(), free_port()
    with MailSink("127.0.0.1", smtp_port, http_port):
        yield smtp_port, f"http://127.0.0.1:{http_port}"


def send(smtp_port: int, subject: str, text: str, html: str | None = None, login: bool = False) -> None:
    msg = EmailMessage()
    msg["From"] = "alertmanager@talker.local"
    msg["To"] = "oncall@talker.local"
    msg["Subject"] = subject
    msg.set_content(text)
    if html:
        msg.add_alternative(html, subtype="html")
    with smtplib.SMTP("127.0.0.1", smtp_port, timeout=10) as client:
        if login:
            client.ehlo()
            client.login("anyone", "anything")
        client.send_message(msg)


def test_stack_mailsink_lists_and_shows_messages_like_mailpit(sink: tuple[int, str]) -> None:
    smtp_port, base = sink
    send(smtp_port, "【告警 1 条】[critical] TalkerDown", "talker 实例宕机", "<p>talker 实例宕机</p>")
    send(smtp_port, "second", "plain only", login=True)

    listing = json.load(urllib.request.urlopen(f"{base}/api/v1/messages", timeout=5))
    assert listing["total"] == 2
    newest, oldest = listing["messages"]
    assert newest["Subject"] == "second"  # Mailpit lists newest first
    assert oldest["Subject"] == "【告警 1 条】[critical] TalkerDown"
    assert oldest["From"]["Address"] == "alertmanager@talker.local"
    assert oldest["To"] == [{"Name": "", "Address": "oncall@talker.local"}]
    assert oldest["Created"].endswith("Z")

    detail = MailApi(base).message(oldest["ID"])
    assert "talker 实例宕机" in detail["Text"]
    assert "<p>talker 实例宕机</p>" in detail["HTML"]
    assert MailApi(base).find("TalkerDown", "宕机") is not None
    assert MailApi(base).find("TalkerDown", exclude={oldest["ID"]}) is None


def test_stack_mailsink_delete_and_unknown_id(sink: tuple[int, str]) -> None:
    smtp_port, base = sink
    send(smtp_port, "to be deleted", "x")
    status, body = request_json("GET", f"{base}/api/v1/message/nope")
    assert status == 404 and body["field"] == "ID"
    assert request_json("DELETE", f"{base}/api/v1/messages")[0] == 200
    assert MailApi(base).summaries() == []
    assert request_json("GET", f"{base}/readyz")[0] == 200
