"""What a markdown reader would make of a DingTalk message: headings, links, images, raw HTML.

A CommonMark parser (markdown-it-py) stands in for DingTalk's renderer: the tests assert on the structure a
user would see, not on substrings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

from markdown_it import MarkdownIt

# The links the relay's own template writes, by their text.
OUR_LINK_TEXTS = {"Prometheus/Grafana", "处理手册", "静默"}


@dataclass
class MarkdownStructure:
    headings: list[str] = field(default_factory=list)
    links: list[tuple[str, str]] = field(default_factory=list)  # (text, href)
    images: list[str] = field(default_factory=list)
    html: list[str] = field(default_factory=list)

    @property
    def link_hosts(self) -> set[str]:
        return {urlsplit(href).netloc for _, href in self.links}


def structure(text: str) -> MarkdownStructure:
    # linkify off: a bare URL in a summary shows its real target; what must not appear is a link whose text
    # hides its target, an image or a heading an alert wrote.
    tokens = MarkdownIt("commonmark").parse(text)
    found = MarkdownStructure()
    for i, token in enumerate(tokens):
        if token.type == "heading_open":
            found.headings.append(tokens[i + 1].content)
        if token.type == "html_block":
            found.html.append(token.content)
        for j, child in enumerate(token.children or []):
            if child.type == "link_open":
                label = ""
                for nxt in token.children[j + 1 :]:  # type: ignore[index]
                    if nxt.type == "link_close":
                        break
                    label += nxt.content
                found.links.append((label, str(child.attrs.get("href", ""))))
            elif child.type == "image":
                found.images.append(str(child.attrs.get("src", "")))
            elif child.type == "html_inline":
                found.html.append(child.content)
    return found
