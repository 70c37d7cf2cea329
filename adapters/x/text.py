"""X's post length: 280 weighted characters, counted as twitter-text v3 counts them.

The rules (twitter-text ``config/v3.json``, which X's "Counting characters" page points to,
https://docs.x.com/fundamentals/counting-characters): the text is NFC-normalised; every URL
counts as 23 (the t.co link that replaces it); an emoji, however many code points it is made
of (skin tones, ZWJ families, flags, keycaps), counts as 2; any other code point counts 1 in
the ranges U+0000-U+10FF, U+2000-U+200D, U+2010-U+201F, U+2032-U+2037 (Latin, Greek,
Cyrillic, Arabic, Hebrew, Indic scripts, general punctuation) and 2 elsewhere (CJK, Hangul,
Japanese kana, ...). The limit is 280.

URLs are found as twitter-text finds them, simplified: anything from ``http://`` or
``https://`` to the next space, and scheme-less domains on a common generic TLD
(``example.com/path``) or on a two-letter country TLD when a path follows (``bit.ly/x``);
trailing punctuation is not part of a URL. A text this misjudges is refused by X with its own
message, which the request path reports.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

import regex

MAX_WEIGHTED = 280
URL_WEIGHT = 23
_SCALE = 100
_DEFAULT_WEIGHT = 200
_RANGES = ((0x0000, 0x10FF), (0x2000, 0x200D), (0x2010, 0x201F), (0x2032, 0x2037))

_GTLDS = (
    "com|org|net|edu|gov|mil|int|info|biz|name|pro|io|co|ai|app|dev|me|tv|xyz|online|site|tech|store|blog|news|"
    "cloud|shop|link|page|world|today|live|social|email|agency|digital|media|studio|design|global|group|company"
)
_URL = regex.compile(
    r"""
    (?<![\w@/.-])
    (?:
        https?://[^\s<>"]+
      | (?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+(?:"""
    + _GTLDS
    + r""")(?![\w-])(?:[/?#][^\s<>"]*)?
      | (?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2}(?![\w-])/[^\s<>"]*
    )
    """,
    regex.IGNORECASE | regex.VERBOSE,
)
_TRAILING = ".,:;!?)]}'\"”’»…"
_EMOJI = regex.compile(r"\p{Extended_Pictographic}|\p{Regional_Indicator}|\u20e3")


def find_urls(text: str) -> list[tuple[int, int]]:
    """(start, end) of each URL in ``text``, trailing punctuation excluded."""
    spans = []
    for m in _URL.finditer(text):
        start, end = m.span()
        while end > start and text[end - 1] in _TRAILING:
            # A closing bracket belongs to the URL when it opened inside it (wiki links).
            if text[end - 1] == ")" and text.count("(", start, end) >= text.count(")", start, end):
                break
            end -= 1
        if end > start:
            spans.append((start, end))
    return spans


def has_url(text: str) -> bool:
    """Whether X will see a link in ``text`` (and bill the post at the with-URL price)."""
    return bool(find_urls(unicodedata.normalize("NFC", text)))


def _weight(cp: int) -> int:
    return _SCALE if any(lo <= cp <= hi for lo, hi in _RANGES) else _DEFAULT_WEIGHT


def weighted_length(text: str) -> int:
    """The length X counts for ``text``, in characters (may be fractional internally; X
    rounds down as twitter-text does)."""
    text = unicodedata.normalize("NFC", text)
    total = 0
    pos = 0
    for start, end in [*find_urls(text), (len(text), len(text))]:
        for cluster in regex.findall(r"\X", text[pos:start]):
            if _EMOJI.search(cluster):
                total += _DEFAULT_WEIGHT
            else:
                total += sum(_weight(ord(c)) for c in cluster)
        if end > start:
            total += URL_WEIGHT * _SCALE
        pos = end
    return total // _SCALE


@dataclass(frozen=True)
class TooLong:
    """A text over X's limit: what a user sees, with the count and what to cut."""

    length: int
    limit: int = MAX_WEIGHTED

    @property
    def message(self) -> str:
        return (
            f"Too long for X: {self.length} of {self.limit} characters (links count 23, CJK characters and emoji 2). "
            f"Shorten it by {self.length - self.limit}."
        )


def check_length(text: str, limit: int = MAX_WEIGHTED) -> TooLong | None:
    """None when ``text`` fits an X post, else the refusal with the count."""
    n = weighted_length(text)
    return TooLong(n, limit) if n > limit else None
