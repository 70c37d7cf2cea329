"""Split Telegram HTML into messages that fit, without breaking a tag or an entity.

Telegram counts a message's length after entities parsing (4096 for text, 1024 for a
caption), in UTF-16 code units as its offsets are. A long post is cut at a line break or a
space where possible; tags open at the cut are closed at the end of one part and reopened at
the start of the next, so every part is valid HTML on its own and keeps its formatting.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

_TOKEN_RE = re.compile(r"<[^>]*>|&(?:#[0-9]+|#x[0-9a-fA-F]+|[a-zA-Z]+);|[^<&]", re.DOTALL)
_TAG_NAME_RE = re.compile(r"</?\s*([a-zA-Z][a-zA-Z0-9-]*)")


def visible_length(text: str) -> int:
    """Length of plain ``text`` in UTF-16 code units, the unit of Telegram's limits."""
    return len(text.encode("utf-16-le")) // 2


def html_visible_length(markup: str) -> int:
    """Visible length of Telegram HTML (tags removed, entities decoded), in UTF-16 units."""
    return sum(atom.weight for atom in _atoms(markup))


@dataclass(frozen=True, slots=True)
class _Atom:
    source: str
    weight: int  # visible UTF-16 units; 0 for a tag
    opens: str = ""  # tag name this atom opens
    closes: str = ""  # tag name this atom closes

    @property
    def breakable_after(self) -> bool:
        return self.source in ("\n", " ")


def _atoms(markup: str) -> list[_Atom]:
    atoms: list[_Atom] = []
    for match in _TOKEN_RE.finditer(markup):
        token = match.group(0)
        if token.startswith("<"):
            name_match = _TAG_NAME_RE.match(token)
            name = name_match.group(1).lower() if name_match else ""
            if token.startswith("</"):
                atoms.append(_Atom(token, 0, closes=name))
            else:
                atoms.append(_Atom(token, 0, opens=name))
        else:
            atoms.append(_Atom(token, visible_length(html.unescape(token))))
    return atoms


def split_html(markup: str, limit: int) -> list[str]:
    """Cut ``markup`` (balanced Telegram HTML) into parts of at most ``limit`` visible units.

    Each part is balanced HTML: tags open at a cut are closed and reopened in the next part.
    Cuts fall after a line break, else after a space, else anywhere between two characters
    (never inside a tag or an entity). The visible text of the parts, joined, is the original.
    """
    if limit <= 0:
        raise ValueError("limit must be positive")
    atoms = _atoms(markup)
    if sum(a.weight for a in atoms) <= limit:
        return [markup]

    parts: list[str] = []
    stack: list[_Atom] = []  # open tags at the current position
    start_stack: list[_Atom] = []  # open tags where the current part starts
    start = 0
    weight = 0
    last_newline: tuple[int, list[_Atom]] | None = None
    last_space: tuple[int, list[_Atom]] | None = None
    i = 0
    while i < len(atoms):
        atom = atoms[i]
        if atom.weight and weight + atom.weight > limit and i > start:
            # A break near the start of a part would waste it: prefer one in its second half.
            cut, cut_stack = i, list(stack)
            for candidate in (last_newline, last_space):
                if candidate is not None and candidate[0] > start:
                    cut, cut_stack = candidate
                    break
            parts.append(_render(atoms[start:cut], start_stack, cut_stack))
            start, start_stack, stack = cut, cut_stack, list(cut_stack)
            weight = 0
            last_newline = last_space = None
            i = cut
            continue
        if atom.opens:
            stack.append(atom)
        elif atom.closes:
            for depth in range(len(stack) - 1, -1, -1):
                if stack[depth].opens == atom.closes:
                    del stack[depth]
                    break
        weight += atom.weight
        i += 1
        if atom.breakable_after and weight > limit // 2:
            snapshot = (i, list(stack))
            if atom.source == "\n":
                last_newline = snapshot
            else:
                last_space = snapshot
    parts.append(_render(atoms[start:], start_stack, stack))
    return [part for part in parts if html_visible_length(part) > 0 or part == parts[0]]


def _render(atoms: list[_Atom], opened: list[_Atom], still_open: list[_Atom]) -> str:
    reopen = "".join(a.source for a in opened)
    body = "".join(a.source for a in atoms)
    close = "".join(f"</{a.opens}>" for a in reversed(still_open))
    return reopen + body + close


def truncate_html(markup: str, limit: int, ellipsis: str = "…") -> str:
    """The first part of ``markup`` that fits ``limit`` visible units, with ``ellipsis`` added
    when something was cut. Balanced like ``split_html``'s parts."""
    if html_visible_length(markup) <= limit:
        return markup
    room = max(1, limit - visible_length(ellipsis))
    first = split_html(markup, room)[0]
    # Put the ellipsis inside the closing tags so the cut reads naturally.
    tail = re.search(r"(</[a-zA-Z-]+>)*$", first)
    cut = tail.start() if tail else len(first)
    return first[:cut] + html.escape(ellipsis) + first[cut:]
