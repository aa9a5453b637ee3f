"""Make alert-controlled strings safe to put into DingTalk markdown.

Labels, annotations and URLs come from whoever can write an alert rule or post to Alertmanager. In the
message they must stay text: no heading, link, image, HTML tag or line break of their own, and a URL must
stay inside the one link we put it in. DingTalk's markdown dialect is not documented well enough to rely
on backslash escapes, so the characters that build markdown structure are replaced by their full-width
look-alikes (readable on a phone, inert for any markdown parser), and URLs are percent-encoded.
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import quote, urlsplit

# [ ] build links and images, < > HTML tags and autolinks, * ` \ could break or swallow our own markup
# (bold names, code spans, escapes). Everything else that markdown knows (# > - at the start of a line) only
# matters at the start of a line, and a field never starts one: newlines are collapsed first.
_MARKDOWN_CHARS = str.maketrans({"[": "［", "]": "］", "<": "＜", ">": "＞", "*": "＊", "`": "｀", "\\": "＼"})
_WHITESPACE = re.compile(r"\s+")
_URL_SAFE = "/:?#&=+;,@%$-._~!*"  # everything else (spaces, ( ) [ ] < > " ' ` { } | \ ^, non-ASCII) is encoded
_NETLOC = re.compile(r"^[A-Za-z0-9._~\-:@\[\]]+$")


def _printable(text: str) -> str:
    """Control and format characters (incl. bidi overrides) and lone surrogates become spaces (line and
    paragraph separators are whitespace already: md_text collapses them)."""
    return "".join(" " if unicodedata.category(c) in ("Cc", "Cf", "Cs") else c for c in text)


def md_text(value: object, limit: int | None = None) -> str:
    """One line of plain text: whitespace collapsed, markdown structure characters neutralised."""
    text = _WHITESPACE.sub(" ", _printable(str(value))).strip()
    if limit is not None and len(text) > limit:
        text = text[: max(limit - 1, 0)] + "…" if limit > 0 else ""
    return text.translate(_MARKDOWN_CHARS)


def md_url(value: object) -> str:
    """The URL if it is http(s) with a host, percent-encoded so it cannot leave its link; else ""."""
    text = str(value).strip()
    if not text or any(unicodedata.category(c) == "Cs" for c in text):
        return ""
    # urlsplit silently drops tabs and newlines (and a "#" after them would start a fragment): encode them first.
    text = "".join(quote(c) if unicodedata.category(c) == "Cc" else c for c in text)
    try:
        parts = urlsplit(text)
    except ValueError:  # e.g. an unbalanced IPv6 bracket
        return ""
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc or not _NETLOC.match(parts.netloc):
        return ""
    url = f"{parts.scheme.lower()}://{parts.netloc}{quote(parts.path, safe=_URL_SAFE)}"
    if parts.query:
        url += "?" + quote(parts.query, safe=_URL_SAFE)
    if parts.fragment:
        url += "#" + quote(parts.fragment, safe=_URL_SAFE)
    return url
