"""A real SMTP server (aiosmtpd) that keeps what it receives and serves a Mailpit-compatible API subset.

`make smoke` and the tests read mail through Mailpit's HTTP API in every setting: from Mailpit in compose,
from this sink in `make dev`, the e2e tests and the offline compose test (where it stands in for Mailpit).

    SMTP  :1025   accepts any sender/recipient (and any AUTH when --accept-any-auth)
    HTTP  :8025   GET /api/v1/messages            {"total", "messages": [{"ID","Subject","From","To","Created",..}]}
                  GET /api/v1/message/{ID}        {"ID","Subject","From","To","Text","HTML","Date",..}
                  DELETE /api/v1/messages         delete all
                  GET /readyz, GET /livez         200 when both servers are up
                  GET /                           a minimal inbox page

Only the sink's own dependencies: the standard library and aiosmtpd.
"""

from __future__ import annotations

import argparse
import email
import email.policy
import email.utils
import html
import json
import signal
import sys
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, Session

MAX_MESSAGES = 1000  # oldest dropped beyond this: a demo sink must not grow without bound
# Mailpit's ports, which compose and `make dev` use. The sink ships alone in the offline Mailpit image, so it
# cannot import stack.defaults: tests/stack_tests/test_stack_defaults.py compares them.
SMTP_PORT = 1025
HTTP_PORT = 8025


def _address(value: str) -> dict[str, str]:
    name, addr = email.utils.parseaddr(value)
    return {"Name": name, "Address": addr}


@dataclass
class StoredMessage:
    id: str
    created: str
    envelope_from: str
    envelope_to: list[str]
    parsed: EmailMessage
    size: int
    text: str = field(init=False)
    html: str = field(init=False)

    def __post_init__(self) -> None:
        self.text = self._body("plain")
        self.html = self._body("html")

    def _body(self, subtype: str) -> str:
        part = self.parsed.get_body(preferencelist=(subtype,))
        if part is None:
            return ""
        try:
            return str(part.get_content())
        except (LookupError, ValueError):
            return ""

    def summary(self) -> dict[str, Any]:
        to = [_address(a) for a in self.parsed.get_all("To", [])] or [{"Name": "", "Address": a}
                                                                      for a in self.envelope_to]
        snippet = " ".join((self.text or html.unescape(self.html)).split())[:250]
        return {
            "ID": self.id,
            "MessageID": str(self.parsed.get("Message-ID", "")).strip("<>"),
            "Read": False,
            "From": _address(str(self.parsed.get("From", self.envelope_from))),
            "To": to,
            "Cc": [],
            "Bcc": [],
            "ReplyTo": [],
            "Subject": str(self.parsed.get("Subject", "")),
            "Created": self.created,
            "Tags": [],
            "Size": self.size,
            "Attachments": 0,
            "Snippet": snippet,
        }

    def detail(self) -> dict[str, Any]:
        out = self.summary()
        out.update({"Date": self.created, "Text": self.text, "HTML": self.html, "Inline": [], "Attachments": []})
        return out


class Mailbox:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._messages: list[StoredMessage] = []

    def add(self, envelope_from: str, envelope_to: list[str], raw: bytes) -> StoredMessage:
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        msg = StoredMessage(
            id=uuid.uuid4().hex[:22],
            created=datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            envelope_from=envelope_from,
            envelope_to=envelope_to,
            parsed=parsed,
            size=len(raw),
        )
        with self._lock:
            self._messages.append(msg)
            del self._messages[:-MAX_MESSAGES]
        return msg

    def newest_first(self) -> list[StoredMessage]:
        with self._lock:
            return list(reversed(self._messages))

    def get(self, message_id: str) -> StoredMessage | None:
        with self._lock:
            return next((m for m in self._messages if m.id == message_id), None)

    def clear(self) -> None:
        with self._lock:
            self._messages.clear()


class _SmtpHandler:
    def __init__(self, mailbox: Mailbox) -> None:
        self.mailbox = mailbox

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        self.mailbox.add(str(envelope.mail_from), [str(r) for r in envelope.rcpt_tos], raw)
        return "250 Message accepted for delivery"


def _accept_any_auth(server: Any, session: Session, envelope: Envelope, mechanism: str, data: Any) -> AuthResult:
    return AuthResult(success=True)


def _make_http_handler(mailbox: Mailbox) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "mailsink"

        def log_message(self, format: str, *args: Any) -> None:
            pass  # polling clients would flood the log

        def _json(self, status: int, body: Any) -> None:
            data = json.dumps(body, ensure_ascii=False).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path in ("/readyz", "/livez"):
                self._json(200, {"status": "ok"})
            elif path == "/api/v1/messages":
                messages = mailbox.newest_first()
                self._json(200, {"total": len(messages), "unread": len(messages), "count": len(messages),
                                 "messages_count": len(messages), "start": 0, "tags": [],
                                 "messages": [m.summary() for m in messages]})
            elif path.startswith("/api/v1/message/"):
                msg = mailbox.get(path.rsplit("/", 1)[1])
                if msg is None:
                    self._json(404, {"error": "message not found", "field": "ID"})
                else:
                    self._json(200, msg.detail())
            elif path == "/":
                self._inbox_page()
            else:
                self._json(404, {"error": "not found"})

        def do_DELETE(self) -> None:
            if self.path.split("?", 1)[0] == "/api/v1/messages":
                mailbox.clear()
                self._json(200, {"status": "ok"})
            else:
                self._json(404, {"error": "not found"})

        def _inbox_page(self) -> None:
            rows = "".join(
                f"<tr><td>{html.escape(m.created)}</td><td>{html.escape(m.summary()['From']['Address'])}</td>"
                f"<td>{html.escape(str(m.parsed.get('Subject', '')))}</td></tr>"
                for m in mailbox.newest_first()
            )
            page = ("<!doctype html><meta charset=utf-8><title>mail sink</title><h1>Mail sink</h1>"
                    f"<table><tr><th>Received</th><th>From</th><th>Subject</th></tr>{rows}</table>").encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

    return Handler


class MailSink:
    """SMTP + HTTP servers sharing one in-memory mailbox; start()/stop() or use as a context manager."""

    def __init__(self, host: str = "127.0.0.1", smtp_port: int = SMTP_PORT, http_port: int = HTTP_PORT,
                 accept_any_auth: bool = True) -> None:
        self.mailbox = Mailbox()
        kwargs: dict[str, Any] = {}
        if accept_any_auth:
            # Mailpit's MP_SMTP_AUTH_ACCEPT_ANY + MP_SMTP_AUTH_ALLOW_INSECURE: a sink, not a gatekeeper.
            kwargs = {"authenticator": _accept_any_auth, "auth_require_tls": False}
        self._smtp = Controller(_SmtpHandler(self.mailbox), hostname=host, port=smtp_port, **kwargs)
        self._http = ThreadingHTTPServer((host, http_port), _make_http_handler(self.mailbox))
        self._http.daemon_threads = True
        self._http_thread = threading.Thread(target=self._http.serve_forever, name="mailsink-http", daemon=True)

    def start(self) -> MailSink:
        self._smtp.start()
        self._http_thread.start()
        return self

    def stop(self) -> None:
        self._http.shutdown()
        self._http.server_close()
        self._smtp.stop()

    def __enter__(self) -> MailSink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="SMTP sink with a Mailpit-compatible HTTP API")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--smtp-port", type=int, default=SMTP_PORT)
    parser.add_argument("--http-port", type=int, default=HTTP_PORT)
    parser.add_argument("--no-auth", action="store_true", help="do not advertise SMTP AUTH")
    args = parser.parse_args(argv)
    sink = MailSink(args.host, args.smtp_port, args.http_port, accept_any_auth=not args.no_auth).start()
    print(f"mail sink: SMTP {args.host}:{args.smtp_port}, API/UI http://{args.host}:{args.http_port}/", flush=True)
    stopped = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopped.set())
    stopped.wait()
    sink.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
