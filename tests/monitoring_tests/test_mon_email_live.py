"""The alert e-mail as the on-call receives it: a real Alertmanager 0.25 with the rendered config sends it over
SMTP to the real SMTP sink (devtools/mailsink.py), and its HTML part is parsed by html5lib in strict mode (any
parse error of the WHATWG algorithm fails) and then checked for its structure: one table per alert, the rows
in order, the links with their exact targets. Text that an alert carries (`<`, `&`, quotes) must stay text."""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any

import html5lib
import pytest

from devtools.mailsink import MailSink, StoredMessage
from stack.config_render import render
from stack.procs import ManagedProcess, free_port, poll_until, wait_http

pytestmark = pytest.mark.e2e

ALERTMANAGER_URL = "http://alertmanager.example:9093"
GRAFANA_URL = "https://grafana.example/ops"
# Label values and annotations with everything HTML and URLs must escape.
COMMON = {"alertname": "TalkerEmailCheck", "severity": "critical", "service": "talker", "instance": "talker:8001",
          "job": "talker"}
ALERTS = [
    {"labels": {**COMMON, "route": '/v1/tts?a=<1>&b="2"'},
     "annotations": {"summary": "摘要 <b>不是粗体</b> & \"引号\"", "description": "详情 <script>alert(1)</script>",
                     "runbook_url": "https://runbook.example/docs/runbook.md#talkeremailcheck"},
     "generatorURL": "http://prometheus.example/graph?g0.expr=up%3D%3D0&g0.tab=1"},
    {"labels": {**COMMON, "route": "/v1/talk"},
     "annotations": {"summary": "第二条告警", "description": "第二条详情",
                     "runbook_url": "https://runbook.example/docs/runbook.md#talkeremailcheck"},
     "generatorURL": "http://prometheus.example/graph?g0.expr=up"},
]


@dataclass
class MailPath:
    alertmanager: str
    sink: MailSink


@pytest.fixture(scope="module")
def mail_path(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MailPath]:
    work = tmp_path_factory.mktemp("email-live")
    smtp_port, am_port = free_port(), free_port()
    sink = MailSink("127.0.0.1", smtp_port, free_port()).start()
    rendered = render(work / "config", profile="fast",
                      env={"ALERTMANAGER_URL": ALERTMANAGER_URL, "GRAFANA_URL": GRAFANA_URL,
                           "ALERT_EMAIL_TO": "oncall@talker.local"},
                      addresses={"mailpit": f"127.0.0.1:{smtp_port}", "alertmanager": f"127.0.0.1:{am_port}",
                                 "dingtalk-relay": f"127.0.0.1:{free_port()}"})  # webhooks: not under test here
    proc = ManagedProcess("alertmanager", [
        "prometheus-alertmanager", f"--config.file={rendered.alertmanager_config}",
        f"--storage.path={work / 'data'}", f"--web.listen-address=127.0.0.1:{am_port}", *rendered.alertmanager_args,
    ], log_dir=work / "logs")
    try:
        proc.start()
        wait_http(f"http://127.0.0.1:{am_port}/-/ready", timeout=30, proc=proc)
        yield MailPath(f"http://127.0.0.1:{am_port}", sink)
    finally:
        proc.stop()
        sink.stop()


def post_alerts(base: str, alerts: list[dict[str, Any]], ends_at: datetime) -> None:
    starts = datetime(2026, 12, 1, 8, 30, tzinfo=UTC)
    body = [{**a, "startsAt": starts.isoformat(), "endsAt": ends_at.isoformat()} for a in alerts]
    request = urllib.request.Request(f"{base}/api/v2/alerts", data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200


def wait_for_mail(sink: MailSink, subject_part: str) -> StoredMessage:
    def found() -> StoredMessage | None:
        return next((m for m in sink.mailbox.newest_first() if subject_part in str(m.parsed["Subject"])), None)

    return poll_until(found, timeout=60, what=f"an e-mail whose subject contains {subject_part!r}")


def parse_strict(html: str) -> ET.Element:
    parser = html5lib.HTMLParser(strict=True, namespaceHTMLElements=False)
    return parser.parse(html)  # raises html5lib.html5parser.ParseError on the first error


def text_of(element: ET.Element) -> str:
    return " ".join("".join(element.itertext()).split())


def direct(element: ET.Element, tag: str) -> list[ET.Element]:
    return [child for child in element if child.tag == tag]


def rows_of(table: ET.Element) -> list[ET.Element]:
    bodies = direct(table, "tbody")
    assert len(bodies) == 1, "rows must sit in the table's one (implied) tbody"
    return direct(bodies[0], "tr")


def silence_matchers(href: str) -> str:
    prefix = f"{ALERTMANAGER_URL}/#/silences/new?filter="
    assert href.startswith(prefix), href
    return urllib.parse.unquote(href.removeprefix(prefix))


def expected_matchers(labels: dict[str, str]) -> str:
    pairs = [f'{name}="{value}"' for name, value in sorted(labels.items()) if name != "alertname"]
    return "{" + ", ".join([*pairs, f'alertname="{labels["alertname"]}"']) + "}"


def check_alert_table(table: ET.Element, alert: dict[str, Any], status: str) -> None:
    rows = rows_of(table)
    header = rows[0]
    assert [c.tag for c in header] == ["th"] and header[0].get("colspan") == "2"
    word = "告警" if status == "firing" else "恢复"
    assert text_of(header[0]) == f"{word} [critical] TalkerEmailCheck"
    cells = [direct(row, "td") for row in rows[1:]]
    assert all(len(pair) == 2 for pair in cells), "every body row is a name cell and a value cell"
    names = [text_of(pair[0]) for pair in cells]
    times = ["开始时间", "结束时间"] if status == "resolved" else ["开始时间"]
    assert names == ["摘要", "详情", *times, "标签", "链接"]
    values = {name: pair[1] for name, pair in zip(names, cells, strict=True)}
    # Alert text stays text: no element smuggled in through an annotation.
    assert text_of(values["摘要"]) == " ".join(alert["annotations"]["summary"].split())
    assert list(values["摘要"]) == [] and list(values["详情"]) == []
    assert text_of(values["详情"]) == alert["annotations"]["description"]
    assert text_of(values["开始时间"]).startswith("2026-12-01 ")
    codes = [c.text for c in direct(values["标签"], "code")]
    assert codes == [f"{name}={value}" for name, value in sorted(alert["labels"].items())]
    links = direct(values["链接"], "a")
    assert [text_of(a) for a in links] == ["处理手册", "查询图表", "静默此告警"]
    assert links[0].get("href") == alert["annotations"]["runbook_url"]
    assert links[1].get("href") == alert["generatorURL"]
    assert silence_matchers(links[2].get("href", "")) == expected_matchers(alert["labels"])


def check_email(message: StoredMessage, status: str) -> None:
    assert message.parsed.get_content_type() == "multipart/alternative"
    assert isinstance(message.parsed, EmailMessage)
    document = parse_strict(message.html)
    assert document.tag == "html" and document.get("lang") == "zh-CN"
    head, body = direct(document, "head")[0], direct(document, "body")[0]
    assert text_of(direct(head, "title")[0]) == " ".join(str(message.parsed["Subject"]).split())
    assert [e.tag for e in body] == ["h2", "p", "table", "table", "p"], "heading, links, one table per alert, footer"
    heading = text_of(direct(body, "h2")[0])
    assert heading == ("告警中（2 条）：TalkerEmailCheck" if status == "firing" else "已恢复：TalkerEmailCheck")
    top_links = {text_of(a): a.get("href") for a in direct(direct(body, "p")[0], "a")}
    assert top_links == {"Alertmanager": ALERTMANAGER_URL, "Grafana 服务总览": f"{GRAFANA_URL}/d/talker-overview",
                         "SLO 与告警": f"{GRAFANA_URL}/d/talker-slo"}
    tables = direct(body, "table")
    by_route = {}
    for table in tables:
        codes = [c.text or "" for c in table.iter("code")]
        route = next(code.removeprefix("route=") for code in codes if code.startswith("route="))
        by_route[route] = table
    assert set(by_route) == {a["labels"]["route"] for a in ALERTS}
    for alert in ALERTS:
        check_alert_table(by_route[alert["labels"]["route"]], alert, status)
    # The plain-text part says the same.
    assert message.text.startswith("告警中" if status == "firing" else "已恢复")
    assert all(a["annotations"]["summary"] in message.text for a in ALERTS)


def test_firing_and_resolved_emails_are_well_formed_html_with_the_alerts_and_links(mail_path: MailPath) -> None:
    post_alerts(mail_path.alertmanager, ALERTS, ends_at=datetime.now(UTC) + timedelta(minutes=10))
    firing = wait_for_mail(mail_path.sink, "【告警 2 条】")
    assert str(firing.parsed["Subject"]) == "【告警 2 条】[critical] TalkerEmailCheck talker:8001"
    check_email(firing, "firing")

    post_alerts(mail_path.alertmanager, ALERTS, ends_at=datetime.now(UTC) - timedelta(seconds=1))
    resolved = wait_for_mail(mail_path.sink, "【已恢复】")
    assert str(resolved.parsed["Subject"]) == "【已恢复】[critical] TalkerEmailCheck talker:8001"
    check_email(resolved, "resolved")


def test_strict_parser_rejects_broken_markup() -> None:
    # The check above is only as good as the parser's strictness: a stray end tag or an unclosed
    # attribute quote must be an error, not silently repaired.
    with pytest.raises(html5lib.html5parser.ParseError):
        parse_strict("<!DOCTYPE html><html><head><title>x</title></head><body><table><tr><td>a</td></tr>"
                     "</div></table></body></html>")
    with pytest.raises(html5lib.html5parser.ParseError):
        parse_strict('<!DOCTYPE html><html><head><title>x</title></head><body><a href="x>y</a></body></html>')

