"""Text -> pieces for incremental synthesis: a short first piece (fast first audio), then sentences.

An engine synthesizes piece after piece and hands each one on as soon as it exists, so the time to the
first audio is the time to synthesize the first piece. Pieces end at sentence ends; a piece that would
pass its word budget ends at the last clause mark (comma, colon, ...) inside it, or else at the budget.
With `first_phrase_words`, a first piece without a clause mark ends instead before the first English word
that opens a phrase (a conjunction or preposition: "and", "without", ...) after at least that many words:
"The deployment finished | without errors and every check is green." A slow engine (Piper) then speaks
its first words sooner, and the break falls where a speaker could pause, not after "and".
Each CJK character counts as a word (about one syllable) and may be a cut point, as the script has no
spaces. A piece is a slice of the text, so nothing is added, dropped or reordered.

`split_long_clauses` keeps each synthesizer call safe: espeak-ng (which Piper phonemizes with too) silently
drops the rest of a clause once its numbers expand past about 300 words: 100 times "2024" (500 characters,
one clause) gave 82 s of speech instead of 134 s. A clause that long is cut into calls of CALL_MAX_WORDS
words, counting a token with digits as the words it may be read as (two per digit).

`speakable` is what every engine hands its synthesizer: espeak-ng (and Piper, which phonemizes with it)
silently skips fullwidth digits, so "电话１２３４５" was spoken as "电话" alone.

`synthesis_calls` is the one place both engines get their calls from: speakable text, long digit runs spelled
out digit by digit (`spell_long_digit_runs`: espeak-ng drops the end of a run of more than about 40 digits),
cut by `split_long_clauses`.
"""

from __future__ import annotations

import re

_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
# A token is one CJK character or a run of other non-space characters (a word with its punctuation).
_TOKEN = re.compile(f"[{_CJK}][^\\s{_CJK}]*|[^\\s{_CJK}]+")
_SENTENCE_END = frozenset(".!?;…。！？；")
_CLAUSE_END = frozenset(",:、，：—–")
# Words a new phrase starts with (a cut before one keeps the phrase whole). Not "of" and "to": they bind too
# closely to the word before them ("the end of", "want to").
PHRASE_OPENERS = frozenset("""
    and but or nor yet so because although though while whereas when whenever where after before until unless
    since if once which who whom whose with without within for from in on at by into onto over under between
    through during against about across along around behind beyond near toward towards upon except despite
""".split())
_WORD_EDGES = "\"'“”‘’()[]{}¿¡"


# Fullwidth digits and Latin letters (U+FF10-FF19, U+FF21-FF3A, U+FF41-FF5A), common in Chinese text, to their
# ASCII forms: espeak-ng says nothing for a fullwidth digit and spells a fullwidth word letter by letter.
# Character for character: everything else in the text is left as it is.
# Fullwidth punctuation is left alone: the voices pause on it as on its ASCII form.
_FULLWIDTH_TO_ASCII = str.maketrans({
    **{0xFF10 + i: 0x30 + i for i in range(10)},
    **{0xFF21 + i: 0x41 + i for i in range(26)},
    **{0xFF41 + i: 0x61 + i for i in range(26)},
})


def speakable(text: str) -> str:
    """`text` as the synthesizer should read it: fullwidth digits and letters as ASCII, same length."""
    return text.translate(_FULLWIDTH_TO_ASCII)


_DIGIT = re.compile(r"\d")
# The most words (as spoken_words counts them) one clause may have in one synthesizer call: well below where
# espeak-ng starts dropping speech, above any clause of ordinary words within TALKER_MAX_TEXT_CHARS.
CALL_MAX_WORDS = 100


def spoken_words(token: str) -> int:
    """How many words a token may be read as: 1, or 2 per digit (numbers expand into words)."""
    digits = len(_DIGIT.findall(token))
    return 2 * digits if digits else 1


def split_long_clauses(text: str, *, max_words: int = CALL_MAX_WORDS) -> list[str]:
    """`text` in as few pieces as it takes for no clause (words between sentence or clause marks) of a piece to
    pass max_words spoken words; [text] when none does (the usual case: one synthesizer call)."""
    pieces: list[str] = []
    start = 0
    words = 0
    for token in _TOKEN.finditer(text):
        weight = spoken_words(token.group())
        if words and words + weight > max_words:
            pieces.append(text[start:token.start()].strip())
            start, words = token.start(), 0
        words += weight
        if token.group()[-1] in _SENTENCE_END or token.group()[-1] in _CLAUSE_END:
            words = 0
    if not pieces:
        return [text]
    pieces.append(text[start:].strip())
    return pieces


# espeak-ng (en) reads a run of up to 32 digits as one number ("twelve nonillion, ..."), a longer one digit by
# digit in pairs, and stops after about 41 digits (cmn, which reads digit by digit, after about 48), dropping the
# rest of the run without a word: 60 digits gave 11.2 s of speech, 30 gave 16.8 s; Piper, whose phonemizer is
# espeak-ng, the same. A run longer than LONG_DIGIT_RUN is spelled out, a space between digits, as espeak-ng reads
# such a run anyway (less the pairing): no word passes the limit, and split_long_clauses can cut between them.
LONG_DIGIT_RUN = 32
_LONG_DIGITS = re.compile(rf"\d{{{LONG_DIGIT_RUN + 1},}}")


def spell_long_digit_runs(text: str) -> str:
    """`text` with each run of more than LONG_DIGIT_RUN digits spaced out digit by digit."""
    return _LONG_DIGITS.sub(lambda run: " ".join(run.group()), text)


def synthesis_calls(text: str) -> list[str]:
    """The texts to hand the synthesizer, one call each, that together say all of `text`."""
    return split_long_clauses(spell_long_digit_runs(speakable(text)))


def split_for_streaming(text: str, *, first_max_words: int, max_words: int,
                        first_phrase_words: int | None = None) -> list[str]:
    """Pieces of `text` in order: the first has at most first_max_words words, the others max_words.

    first_phrase_words: a first piece over budget without a clause mark ends before the first phrase opener
    (PHRASE_OPENERS) that follows at least this many words, when there is one."""
    pieces: list[str] = []
    start: int | None = None  # text index where the current piece starts
    words = 0
    last_clause_end: int | None = None  # text index just after the last clause mark in the current piece
    words_at_clause = 0
    phrase_start: int | None = None  # text index of the first piece's first usable phrase opener
    words_before_phrase = 0

    def cut(end: int) -> None:
        nonlocal start
        assert start is not None
        piece = text[start:end].strip()
        if piece:
            pieces.append(piece)
        start = None

    for token in _TOKEN.finditer(text):
        if start is None:
            start, words, last_clause_end, words_at_clause = token.start(), 0, None, 0
        words += 1
        last_char = token.group()[-1]
        if last_char in _SENTENCE_END:
            cut(token.end())
            continue
        if (first_phrase_words is not None and not pieces and phrase_start is None and words > first_phrase_words
                and token.group().lower().strip(_WORD_EDGES) in PHRASE_OPENERS):
            phrase_start, words_before_phrase = token.start(), words - 1
        if last_char in _CLAUSE_END:
            last_clause_end, words_at_clause = token.end(), words
        budget = first_max_words if not pieces else max_words
        if words >= budget:
            if not pieces and last_clause_end is None and phrase_start is not None:
                cut(phrase_start)  # the opener and the words after it begin the next piece
                start, words = phrase_start, words - words_before_phrase
            elif last_clause_end is not None and words_at_clause < words:
                end = last_clause_end  # a clause mark inside the piece: the more natural place to pause
                cut(end)
                # The words after the clause mark begin the next piece.
                rest = _TOKEN.search(text, end)
                start = rest.start() if rest is not None and rest.start() <= token.start() else None
                words = words - words_at_clause if start is not None else 0
                last_clause_end, words_at_clause = None, 0
            else:
                cut(token.end())
    if start is not None:
        cut(len(text))
    return pieces


# The pause a voice makes after a sentence / clause inside one text (espeak-ng en-us and cmn at rate 1:
# 0.28 s and 0.14 s). Each piece is synthesized alone and ends without it, so the engine adds it back.
SENTENCE_PAUSE_S = 0.28
CLAUSE_PAUSE_S = 0.14


def pause_after(piece: str) -> float:
    """Seconds of silence that follow `piece` at normal rate (0 when it was cut between words)."""
    last = piece.rstrip()[-1:] if piece.strip() else ""
    if last in _SENTENCE_END:
        return SENTENCE_PAUSE_S
    if last in _CLAUSE_END:
        return CLAUSE_PAUSE_S
    return 0.0
