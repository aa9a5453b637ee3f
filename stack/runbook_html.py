"""docs/runbook.md as one self-contained HTML page, so that every alert's runbook link opens somewhere.

The page is served by Grafana (compose mounts it under Grafana's static `public/runbook/`), which stays up
when talker is down, and each alert links to `RUNBOOK_BASE_URL#<alertname lowercased>`: the anchor GitHub
and GitLab give the same heading, so a RUNBOOK_BASE_URL pointing at the markdown file in a fork works too.

Only the markdown the runbook uses is understood: `#`/`##`/`###` headings, paragraphs, `-` lists (nested by
two spaces), `code`, **bold**, <autolinks> and [text](url). Everything else is text, HTML-escaped.
Standard library only: it runs in config-init (the relay image).
"""

from __future__ import annotations

import html
import re

INLINE = re.compile(r"`([^`]+)`|\*\*(.+?)\*\*|<(https?://[^>\s]+)>|\[([^\]]+)\]\((https?://[^)\s]+|#[\w-]+)\)")
STYLE = """
body{font-family:system-ui,"PingFang SC","Microsoft YaHei",sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;
line-height:1.6;color:#1f2328}
code{background:#f0f2f4;padding:.1em .3em;border-radius:4px;font-size:90%;word-break:break-all}
h2{border-bottom:1px solid #d0d7de;padding-bottom:.3em;margin-top:2.5rem}
h2:target{background:#fff8c5}
"""


def anchor(heading: str) -> str:
    """GitHub's heading anchor: lowercase, spaces to '-', punctuation dropped ("TalkerDown" -> "talkerdown")."""
    slug = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return slug.replace(" ", "-")


def _inline(text: str) -> str:
    out, last = [], 0
    for match in INLINE.finditer(text):
        out.append(html.escape(text[last:match.start()]))
        code, bold, autolink, label, href = match.groups()
        if code is not None:
            out.append(f"<code>{html.escape(code)}</code>")
        elif bold is not None:
            out.append(f"<strong>{_inline(bold)}</strong>")
        elif autolink is not None:
            out.append(f'<a href="{html.escape(autolink)}">{html.escape(autolink)}</a>')
        else:
            out.append(f'<a href="{html.escape(href)}">{_inline(label)}</a>')
        last = match.end()
    out.append(html.escape(text[last:]))
    return "".join(out)


def render_runbook(markdown: str, title: str = "talker-stack runbook") -> str:
    body: list[str] = []
    paragraph: list[str] = []
    depth = 0  # open <ul> levels

    def close_paragraph() -> None:
        if paragraph:
            body.append(f"<p>{_inline(' '.join(paragraph))}</p>")
            paragraph.clear()

    def close_lists(to: int = 0) -> None:
        nonlocal depth
        while depth > to:
            body.append("</li></ul>")
            depth -= 1

    for line in markdown.splitlines():
        heading = re.match(r"^(#{1,3}) (.+)$", line)
        item = re.match(r"^( *)- (.*)$", line)
        if heading:
            close_paragraph()
            close_lists()
            level, text = len(heading.group(1)), heading.group(2).strip()
            body.append(f'<h{level} id="{anchor(text)}">{_inline(text)}</h{level}>')
        elif item:
            close_paragraph()
            level = len(item.group(1)) // 2 + 1
            if level > depth:
                while depth < level:
                    body.append("<ul><li>")
                    depth += 1
            else:
                close_lists(level)
                body.append("</li><li>")
            body.append(_inline(item.group(2)))
        elif not line.strip():
            close_paragraph()
            close_lists()
        elif depth:
            body.append(" " + _inline(line.strip()))  # continuation of a list item
        else:
            paragraph.append(line.strip())
    close_paragraph()
    close_lists()
    return (f'<!doctype html>\n<html lang="zh-CN"><head><meta charset="utf-8">'
            f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>\n<body>\n"
            + "\n".join(body) + "\n</body></html>\n")
