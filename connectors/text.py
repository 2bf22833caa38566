"""Text clean-up: Unicode NFKC, whitespace, HTML to text, a tiny language guess."""

from __future__ import annotations

import html
import re
import unicodedata
from html.parser import HTMLParser
from typing import ClassVar

_WS = re.compile(r"\s+")
_ZERO_WIDTH = dict.fromkeys(
    map(
        ord,
        "\u200b\u200c\u200d\u2060\ufeff\u00ad\u200e\u200f\u061c\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069",
    ),
    None,
)
"""Removed: zero-width characters, soft hyphens, and bidirectional marks, embeddings, overrides and
isolates (U+202E RIGHT-TO-LEFT OVERRIDE makes a stored title read differently from what it says)."""
_TAGGISH = re.compile(r"<[A-Za-z/!]")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029]")


def clean_text(value: str | None) -> str:
    """NFKC, zero-width, bidi control characters and soft hyphens removed, whitespace runs collapsed, trimmed."""
    if not value:
        return ""
    text = value if value.isascii() else unicodedata.normalize("NFKC", value).translate(_ZERO_WIDTH)
    if not text.isprintable():
        text = _CONTROL.sub(" ", text)
    return _WS.sub(" ", text).strip()


class _TextExtractor(HTMLParser):
    _SKIP: ClassVar[frozenset[str]] = frozenset({"script", "style", "noscript", "template", "head"})
    _BLOCK: ClassVar[frozenset[str]] = frozenset(
        {"p", "br", "div", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "section", "article"}
    )

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag in self._SKIP:
            self._skipping += 1
        elif tag in self._BLOCK:
            self.parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP and self._skipping:
            self._skipping -= 1
        elif tag in self._BLOCK:
            self.parts.append(" ")

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(data)


def html_to_text(value: str | None) -> str:
    """Strip tags (dropping script/style), decode entities, then :func:`clean_text`."""
    if not value:
        return ""
    if not _TAGGISH.search(value):
        return clean_text(html.unescape(value))
    parser = _TextExtractor()
    try:
        parser.feed(value)
        parser.close()
    except Exception:
        return clean_text(re.sub(r"<[^>]*>", " ", html.unescape(value)))
    return clean_text("".join(parser.parts))


# -- language ---------------------------------------------------------------------------------
_STOPWORDS: dict[str, frozenset[str]] = {
    "en": frozenset(
        "the and of to in for on with as at by from is are was were will its after over says said "
        "than shares stock profit quarter".split()
    ),
    "de": frozenset("der die das und mit für von auf ist nicht ein eine den dem des zu im sich aktie gewinn".split()),
    "fr": frozenset("le la les et des du un une pour sur dans est par au aux avec plus que bourse action".split()),
    "es": frozenset("el la los las y de del en por para con una un que se al sus más bolsa acciones".split()),
    "it": frozenset("il lo la gli le e di del della che per con un una nel sono borsa azioni utile".split()),
    "pt": frozenset("o a os as e de do da em para com um uma que no na dos das ações bolsa lucro".split()),
    "nl": frozenset("de het een en van in op met voor is zijn dat aan bij niet winst aandeel".split()),
}
_LANGS_OF: dict[str, tuple[str, ...]] = {}
for _lang, _words in _STOPWORDS.items():
    for _w in _words:
        _LANGS_OF[_w] = (*_LANGS_OF.get(_w, ()), _lang)
_WORD = re.compile(r"[^\W\d_]+", re.UNICODE)


def guess_language(text: str, default: str = "en") -> str:
    """A tiny heuristic: script ranges first, then stop-word counts; ``default`` when unsure."""
    if not text:
        return default
    counts = {"ja": 0, "zh": 0, "ko": 0, "ru": 0, "ar": 0, "el": 0, "he": 0}
    letters = 0
    for ch in "" if text.isascii() else text:
        o = ord(ch)
        if ch.isalpha():
            letters += 1
        if 0x3040 <= o <= 0x30FF:
            counts["ja"] += 1
        elif 0x4E00 <= o <= 0x9FFF:
            counts["zh"] += 1
        elif 0xAC00 <= o <= 0xD7AF:
            counts["ko"] += 1
        elif 0x0400 <= o <= 0x04FF:
            counts["ru"] += 1
        elif 0x0600 <= o <= 0x06FF:
            counts["ar"] += 1
        elif 0x0370 <= o <= 0x03FF:
            counts["el"] += 1
        elif 0x0590 <= o <= 0x05FF:
            counts["he"] += 1
    if letters:  # (only counted for non-ASCII text)
        if counts["ja"] and counts["ja"] + counts["zh"] > letters * 0.3:
            return "ja"
        best = max(counts, key=counts.__getitem__)
        if counts[best] > letters * 0.3:
            return best
    words = _WORD.findall(text.lower())
    if not words:
        return default
    scores = dict.fromkeys(_STOPWORDS, 0)
    langs_of = _LANGS_OF
    for w in words[:80]:
        if w in langs_of:
            for lang in langs_of[w]:
                scores[lang] += 1
    best = max(scores, key=scores.__getitem__)
    top = scores[best]
    if top == 0 or list(scores.values()).count(top) > 1:
        return default
    return best
