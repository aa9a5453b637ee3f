"""Cut an LLM's token stream into sentences for TTS, as early as each sentence is known to be complete.

    cutter = SentenceCutter(first_max_chars=40, max_chars=120)
    for delta in deltas:
        for sentence in cutter.feed(delta):   # complete sentences, stripped, never empty
            speak(sentence)
    for sentence in cutter.flush():           # what is left when the stream ends
        speak(sentence)

Boundaries: Chinese 。！？； (and a line break) end a sentence at once; English ! and ? too; an English "."
ends one when a space or the end of a word follows, except after a number ("3.5"), a single letter
("J. K.") or a known abbreviation ("Dr.", "e.g."). Closing quotes/brackets and repeated marks that have
already arrived stay with their sentence ("好！”", "Really?!"). A sentence with no boundary within
`max_chars` (`first_max_chars` for the first one, so the first audio starts early) is cut at its last
comma, colon or space within the limit, else at the limit. Latency over beauty: a boundary is taken when its
mark arrives; only a "." after a digit waits for the next character. Closing marks that arrive after their
sentence was sent (and other punctuation that cannot open a sentence) are dropped: they speak nothing.
"""

from __future__ import annotations

CJK_TERMINATORS = frozenset("。！？；\n")
EN_TERMINATORS = frozenset("!?")
CLOSERS = frozenset("”’」』）】》)]\"'")
# Where a too-long sentence may be cut, best first: after one of these (the cut keeps the mark).
SOFT_BREAKS = frozenset("，、,;；：:—")
ABBREVIATIONS = frozenset({
    "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "vs", "no", "inc", "ltd", "co", "mt", "fig", "approx",
    "dept", "est", "gen", "gov", "lt", "col", "sgt", "rev", "jan", "feb", "mar", "apr", "jun", "jul", "aug",
    "sep", "sept", "oct", "nov", "dec",
})

# Closing marks and punctuation that cannot start a sentence; with whitespace, dropped there (they speak nothing).
_LEADING_STRAYS = " \t\r\n\u3000”’」』）】》)]。！？；.!?…,，、"
_WAIT = -1  # "need the next character to decide"


class SentenceCutter:
    def __init__(self, *, max_chars: int = 120, first_max_chars: int | None = None) -> None:
        if max_chars < 2 or (first_max_chars is not None and first_max_chars < 2):
            raise ValueError("sentence limits must be at least 2 characters")
        self.max_chars = max_chars
        self.first_max_chars = first_max_chars or max_chars
        self._buffer = ""
        self._emitted = 0

    @property
    def pending(self) -> str:
        """Text received but not yet part of a sentence."""
        return self._buffer

    def feed(self, delta: str) -> list[str]:
        self._buffer += delta
        return self._cut(final=False)

    def flush(self) -> list[str]:
        sentences = self._cut(final=True)
        rest = self._buffer.strip()
        self._buffer = ""
        if rest:
            sentences.append(rest)
            self._emitted += 1
        return sentences

    def _limit(self) -> int:
        return self.first_max_chars if self._emitted == 0 else self.max_chars

    def _cut(self, *, final: bool) -> list[str]:
        sentences: list[str] = []
        while True:
            # Marks that open no sentence belong to the one already sent (a quote or "!" that arrived late).
            self._buffer = self._buffer.lstrip(_LEADING_STRAYS)
            end = _next_end(self._buffer, self._limit(), final)
            if end is None:
                return sentences
            sentence, self._buffer = self._buffer[:end].strip(), self._buffer[end:]
            if sentence:
                sentences.append(sentence)
                self._emitted += 1


def _next_end(text: str, limit: int, final: bool) -> int | None:
    """Where the first sentence of `text` ends (exclusive), or None when that is not known yet."""
    for i in range(len(text)):
        if i >= limit:
            return _length_cut(text, limit)
        end = _boundary_at(text, i, final)
        if end == _WAIT:
            return None
        if end:
            return min(end, limit)  # marks after the limit start the next sentence
    return None


def _boundary_at(text: str, i: int, final: bool) -> int:
    """End of a sentence whose mark is at i (0 when text[i] ends nothing, _WAIT when undecided)."""
    char = text[i]
    if char == "\n":  # a line ends a sentence (lists, headings) and keeps nothing after it
        return i + 1
    if char in CJK_TERMINATORS or char in EN_TERMINATORS:
        return _extend(text, i + 1)
    if char != ".":
        return 0
    if i + 1 < len(text):
        after = text[i + 1]
        if after == ".":  # an ellipsis: decide at its last dot
            return 0
        if not (after.isspace() or after in CLOSERS or after in CJK_TERMINATORS):
            return 0  # "3.5", "e.g", "example.com", "U.S"
    elif not final and i > 0 and text[i - 1].isdigit():
        return _WAIT  # "costs 3." may go on as "3.5"
    if text[:i].isdigit():  # "1. " opening a numbered list item
        return 0
    if _ends_abbreviation(text, i):
        return 0
    return _extend(text, i + 1)


def _extend(text: str, end: int) -> int:
    """Keep closing quotes/brackets and repeated marks that follow a boundary with their sentence."""
    while end < len(text) and (text[end] in CLOSERS or text[end] in EN_TERMINATORS or text[end] in "。！？；."):
        end += 1
    return end


def _ends_abbreviation(text: str, dot: int) -> bool:
    start = dot
    while start > 0 and (text[start - 1].isascii() and (text[start - 1].isalpha() or text[start - 1] == ".")):
        start -= 1
    word = text[start:dot]
    if not word:
        return False
    if "." in word.strip("."):  # e.g, i.e, U.S, a.m
        return True
    return len(word) == 1 or word.lower() in ABBREVIATIONS


def _length_cut(text: str, limit: int) -> int:
    """Cut a sentence that found no boundary within `limit` characters: at a soft break, else at the limit."""
    window = text[:limit]
    for breaks in (SOFT_BREAKS, None):
        for i in range(len(window) - 1, limit // 3, -1):
            if (window[i] in breaks) if breaks is not None else window[i].isspace():
                return i + 1
    return limit
