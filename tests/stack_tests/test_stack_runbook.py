"""Every alert's runbook link resolves in a user's deployment: config_render rewrites the links to
RUNBOOK_BASE_URL, by default the runbook page it renders for Grafana to serve, and that page has the
heading each link's anchor names."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import yaml

from stack import config_render
from stack.config_render import RenderError, render
from stack.runbook_html import render_runbook

ROOT = Path(__file__).resolve().parents[2]


class Headings(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: dict[str, str] = {}
        self._open: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs).get("id")
        if tag in ("h1", "h2", "h3") and found:
            self._open = found
            self.ids[found] = ""

    def handle_data(self, data: str) -> None:
        if self._open:
            self.ids[self._open] += data

    def handle_endtag(self, tag: str) -> None:
        self._open = None


def alerts(rules_dir: Path) -> list[dict[str, Any]]:
    return [rule for path in sorted(rules_dir.glob("*.yml"))
            for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]
            for rule in group["rules"] if "alert" in rule]


def rule_text(rules_dir: Path) -> str:
    """Every rule file (alerts.yml and the generated slo.yml hold alerts) as one text."""
    return "".join(path.read_text(encoding="utf-8") for path in sorted(rules_dir.glob("*.yml")))


@pytest.mark.parametrize("profile", ["default", "fast"])
def test_stack_default_runbook_links_land_on_headings_of_the_served_page(tmp_path: Path, profile: str) -> None:
    rendered = render(tmp_path, profile=profile, env={"GRAFANA_URL": "https://ops.example.com/grafana/"})
    page = Headings()
    page.feed(rendered.runbook_page.read_text(encoding="utf-8"))
    rules = alerts(rendered.rules_dir)
    assert len(rules) >= 20
    for rule in rules:
        url = rule["annotations"]["runbook_url"]
        base, _, fragment = url.partition("#")
        assert base == "https://ops.example.com/grafana/public/runbook/index.html", url
        assert page.ids.get(fragment) == rule["alert"], f"{rule['alert']}: no heading #{fragment} on the page"
    assert config_render.RUNBOOK_SOURCE not in rule_text(rendered.rules_dir)


def test_stack_runbook_base_url_is_configurable_and_checked(tmp_path: Path) -> None:
    base = "https://git.example.com/ops/talker-stack/-/blob/main/docs/runbook.md"
    rendered = render(tmp_path, env={"RUNBOOK_BASE_URL": base + "/"})
    text = rule_text(rendered.rules_dir)
    assert f"runbook_url: {base}#talkerdown\n" in text  # comments and layout kept in the default profile
    assert text.count(f"{base}#") == sum(1 for _ in alerts(rendered.rules_dir))
    for bad in ("https://x.example/runbook#old", "https://x.example/run book", "javascript:alert(1)",
                'https://x.example/"quoted"'):
        with pytest.raises(RenderError, match="RUNBOOK_BASE_URL"):
            render(tmp_path / "bad", env={"RUNBOOK_BASE_URL": bad})


def test_stack_runbook_page_renders_the_markdown_it_uses() -> None:
    page = render_runbook("# Title\n\nText with `a<b` and **bold** <https://x.example/>.\n\n## AlertOne\n\n"
                          "- item [link](https://y.example/)\n  - nested\n- second\n")
    assert '<h1 id="title">Title</h1>' in page and '<h2 id="alertone">AlertOne</h2>' in page
    assert "<code>a&lt;b</code>" in page and "<strong>bold</strong>" in page
    assert '<a href="https://x.example/">https://x.example/</a>' in page
    assert '<ul><li>item <a href="https://y.example/">link</a><ul><li>nested</li></ul></li><li>second</li></ul>' \
        in page.replace("\n", "")
    assert "<script" not in render_runbook("<script>alert(1)</script>")


def test_stack_compose_serves_the_rendered_runbook_from_grafana() -> None:
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    public = "/usr/share/grafana" + config_render.GRAFANA_RUNBOOK_PATH.rsplit("/", 1)[0]
    assert f"runbook:{public}:ro" in services["grafana"]["volumes"]
    assert "runbook:/rendered/runbook" in services["config-init"]["volumes"]
    assert "./docs/runbook.md:/opt/talker-stack/docs/runbook.md:ro" in services["config-init"]["volumes"]
    assert services["config-init"]["environment"]["RUNBOOK_BASE_URL"] == "${RUNBOOK_BASE_URL:-}"
