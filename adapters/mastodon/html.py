"""Status HTML → plain text with its links, for the chat renderers.

Mastodon statuses are HTML (docs: entities/Status.md, ``content``: "HTML-encoded status
content"), sanitised by the sending server but, from a remote server, not by ours in every
version: treat it as hostile. The stdlib ``html.parser`` tokenises it (no regular expressions
on HTML); what comes out is plain text and ``Link`` spans over it:

* ``<p>`` separates paragraphs with a blank line, ``<br>`` breaks a line, list items start a
  line with "• "; other whitespace collapses as a browser collapses it (kept in ``<pre>``);
* entities are decoded; control characters are dropped; ``<script>``/``<style>`` and the
  like contribute nothing;
* links keep their target as a ``Link`` over their text when it is http(s) (others — a
  ``javascript:`` URL — stay plain text);
* a mention (``<a class="u-url mention">@<span>bob</span></a>``) reads ``@bob@server`` — the
  full address from the status's ``mentions`` list, else the link's host — because a bare
  ``@bob`` is ambiguous outside the server that wrote it; a hashtag reads ``#tag``;
* Mastodon shortens long links with ``<span class="invisible">`` (the hidden scheme and tail)
  and ``<span class="ellipsis">`` (the web app draws "…" after it): invisible text is dropped
  and an ellipsis span is followed by "…", as the web app shows them; a link whose visible text
  is all hidden shows its URL instead.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from html.parser import HTMLParser
from urllib.parse import urlsplit

from bridge.model import Link

# Elements whose content is never text a reader sees.
_SKIP = frozenset(
    {"script", "style", "template", "head", "title", "noscript", "iframe", "object", "svg", "math", "textarea", "select"}
)
# Elements that are paragraphs (a blank line around them) or lines (a line break around them).
_PARAGRAPH = frozenset({"p", "blockquote", "pre", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6", "table", "figure"})
_LINE = frozenset({"div", "li", "tr", "dt", "dd", "section", "article", "header", "footer", "hr"})
_VOID = frozenset({"br", "img", "hr", "input", "meta", "link", "wbr", "area", "base", "col", "embed", "source", "track"})
_WHITESPACE = frozenset(" \t\n\r\f")
_SPACES = re.compile(r"[ \t\n\r\f]+")  # on text between tags, never on HTML


@dataclass(frozen=True, slots=True)
class Rendered:
    """Plain text and the links over it (``Link`` offsets are Python string indices)."""

    text: str
    links: tuple[Link, ...] = ()


def html_to_text(content: str, *, mentions: Mapping[str, str] | None = None, local_domain: str = "") -> Rendered:
    """The plain text and links of a status's HTML ``content``.

    ``mentions`` maps a mentioned account's profile URL to its ``acct`` (the status's
    ``mentions`` list); ``local_domain`` completes an ``acct`` without a domain (an account of
    the server that answered). Never raises on any input.
    """
    parser = _StatusParser(mentions or {}, local_domain)
    try:
        parser.feed(content if isinstance(content, str) else "")
        parser.close()
    except Exception:  # html.parser is lenient, but nothing hostile may escape as a crash
        pass
    return parser.result()


@dataclass
class _Anchor:
    href: str
    classes: frozenset[str]
    part: int  # index in parts where its text starts
    start: int  # text offset where its text starts


class _StatusParser(HTMLParser):
    def __init__(self, mentions: Mapping[str, str], local_domain: str) -> None:
        super().__init__(convert_charrefs=True)
        self.mentions = {str(k): str(v) for k, v in mentions.items() if isinstance(k, str) and isinstance(v, str)}
        self.local_domain = local_domain
        self.parts: list[str] = []
        self.length = 0
        self.links: list[Link] = []
        self.pending = 0  # newlines owed before the next text
        self.skip: list[str] = []  # open elements whose content is dropped
        self.spans: list[str] = []  # per open <span>: "invisible", "ellipsis" or ""
        self.invisible = 0
        self.pre = 0
        self.anchor: _Anchor | None = None

    # --- output -----------------------------------------------------------------------------

    def _last(self) -> str:
        return self.parts[-1][-1] if self.parts and self.parts[-1] else ""

    def _emit(self, text: str) -> None:
        if not text:
            return
        if self.pending and self.length:
            self._emit_pending()
        self.pending = 0
        if self._last() in ("\n", "") and text.startswith(" ") and not self.pre:
            text = text.lstrip(" ")
            if not text:
                return
        self._raw(text)

    def _raw(self, text: str) -> None:
        self.parts.append(text)
        self.length += len(text)

    def _break(self, newlines: int) -> None:
        self.pending = max(self.pending, newlines)

    # --- tokens ------------------------------------------------------------------------------

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP:
            self.skip.append(tag)
            return
        if self.skip:
            return
        if tag == "br":
            if not self.invisible:
                self._emit_newline()
            return
        if tag in _PARAGRAPH:
            self._break(2)
            if tag == "pre":
                self.pre += 1
        elif tag in _LINE:
            self._break(1)
            if tag == "li" and not self.invisible:
                self._emit("• ")
        elif tag == "span":
            classes = _classes(attrs)
            kind = "invisible" if "invisible" in classes else "ellipsis" if "ellipsis" in classes else ""
            self.spans.append(kind)
            if kind == "invisible":
                self.invisible += 1
        elif tag == "a":
            self._close_anchor(implicit=True)  # an <a> inside an <a> is not valid HTML: the first one ends
            if self.pending and self.length:
                self._emit_pending()
            self.anchor = _Anchor(_attr(attrs, "href"), _classes(attrs), len(self.parts), self.length)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in _VOID:
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        if self.skip:
            if tag == self.skip[-1]:
                self.skip.pop()
            elif tag in self.skip:  # a stray end tag closes what it names, as browsers do
                del self.skip[self.skip.index(tag) :]
            return
        if tag in _PARAGRAPH:
            self._break(2)
            if tag == "pre" and self.pre:
                self.pre -= 1
        elif tag in _LINE:
            self._break(1)
        elif tag == "span" and self.spans:
            kind = self.spans.pop()
            if kind == "invisible":
                self.invisible -= 1
            elif kind == "ellipsis" and not self.invisible:
                self._emit("…")
        elif tag == "a":
            self._close_anchor()

    def handle_data(self, data: str) -> None:
        if self.skip or self.invisible or not data:
            return
        data = "".join(ch for ch in data if ch in "\n\t" or not _is_control(ch))
        if self.pre:
            self._emit(data)
            return
        text = _SPACES.sub(" ", data).strip(" ")  # HTML collapses ASCII whitespace only, not &nbsp;
        if not text:
            if data and self.length and self._last() not in ("", " ", "\n") and not self.pending:
                self._emit(" ")
            return
        if data[0] in _WHITESPACE and self.length and self._last() not in (" ", "\n") and not self.pending:
            text = " " + text
        if data[-1] in _WHITESPACE:
            text += " "
        self._emit(text)

    def _emit_newline(self) -> None:
        if self.length:
            self.pending = 0
            self._strip_trailing_space()
            self._raw("\n")

    def _emit_pending(self) -> None:
        self._strip_trailing_space()
        self._raw("\n" * self.pending)
        self.pending = 0

    def _strip_trailing_space(self) -> None:
        while self.parts and self.parts[-1].endswith(" "):
            last = self.parts.pop()
            self.length -= len(last)
            kept = last.rstrip(" ")
            if kept:
                self.parts.append(kept)
                self.length += len(kept)
                break
        if self.anchor is not None and self.anchor.part > len(self.parts):
            self.anchor.part, self.anchor.start = len(self.parts), self.length

    # --- links -------------------------------------------------------------------------------

    def _close_anchor(self, implicit: bool = False) -> None:
        anchor, self.anchor = self.anchor, None
        if anchor is None:
            return
        shown = "".join(self.parts[anchor.part :])
        lead = len(shown) - len(shown.lstrip())
        trail = len(shown) - len(shown.rstrip())
        core = shown.strip()
        url = anchor.href if _is_web_url(anchor.href) else ""
        if "mention" in anchor.classes and "hashtag" not in anchor.classes and core.startswith("@"):
            core = self._full_mention(core, anchor.href)
        elif url and not core and not implicit:
            core = _display_url(url)
        if not core:
            return
        del self.parts[anchor.part :]
        self.length = anchor.start
        if lead:
            self._raw(shown[:lead])
        start = self.length
        self._raw(core)
        if url:
            self.links.append(Link(start, self.length, url))
        if trail:
            self._raw(shown[len(shown) - trail :])

    def _full_mention(self, shown: str, href: str) -> str:
        acct = self.mentions.get(href, "")
        if acct:
            acct = acct.lstrip("@")
            if "@" not in acct and self.local_domain:
                acct = f"{acct}@{self.local_domain}"
            return "@" + acct
        if shown.count("@") == 1:
            host = urlsplit(href).hostname if _is_web_url(href) else None
            if host:
                return f"{shown}@{host}"
        return shown

    def result(self) -> Rendered:
        self._close_anchor()
        text = "".join(self.parts)
        stripped = text.rstrip()
        lead = len(stripped) - len(stripped.lstrip())
        text = stripped[lead:]
        links = tuple(
            Link(max(0, link.start - lead), min(len(text), link.end - lead), link.url)
            for link in self.links
            if link.end - lead > 0 and link.start - lead < len(text)
        )
        return Rendered(text, links)


def _attr(attrs: list[tuple[str, str | None]], name: str) -> str:
    for key, value in attrs:
        if key == name and value is not None:
            return value.strip()
    return ""


def _classes(attrs: list[tuple[str, str | None]]) -> frozenset[str]:
    return frozenset(_attr(attrs, "class").split())


def _is_web_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.netloc) and not any(_is_control(c) or c == " " for c in url)


def _display_url(url: str) -> str:
    return url.split("://", 1)[-1]


def _is_control(ch: str) -> bool:
    code = ord(ch)
    return code < 0x20 or 0x7F <= code < 0xA0
