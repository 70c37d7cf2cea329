"""OAuth 1.0a user-context signing (HMAC-SHA1) for X API requests, on oauthlib.

X signs user-context requests (posts, replies, DMs, the team account's own timelines) with
OAuth 1.0a as RFC 5849 defines it (https://docs.x.com/fundamentals/authentication/oauth-1-0a/
creating-a-signature): the signature base string holds the method, the URL without its query,
and every parameter of the query string and of a form-encoded body with the ``oauth_*`` ones,
percent-encoded (RFC 3986 unreserved characters only), sorted by name then value. A JSON body
(what ``POST /2/tweets`` and the DM endpoints take) is not a parameter source and is not
signed (RFC 5849 3.4.1.3.1: only ``application/x-www-form-urlencoded`` bodies are).

oauthlib's ``Client.sign`` does exactly this; it is pure computation, so it fits an aiohttp
request path without a thread. This module only shapes its inputs (query and form as pairs,
the nonce and timestamp injectable for the documented vectors) and keeps the secrets out of
``repr``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import quote, urlsplit, urlunsplit

from oauthlib.oauth1 import SIGNATURE_HMAC_SHA1, Client

# oauthlib logs, at DEBUG, the parameters it signs (the access token) and the signature base
# string and signature: never useful to an operator, and a token must not reach a log. Its
# warnings and errors still pass.
logging.getLogger("oauthlib").setLevel(logging.WARNING)

FORM = "application/x-www-form-urlencoded"

Pairs = Iterable[tuple[str, str]] | Mapping[str, str]


@dataclass(frozen=True)
class Credentials:
    """The four keys of an X app's user context (Developer Console: "Keys and tokens")."""

    consumer_key: str
    consumer_secret: str = field(repr=False)
    access_token: str
    access_token_secret: str = field(repr=False)

    def __post_init__(self) -> None:
        missing = [
            name for name in ("consumer_key", "consumer_secret", "access_token", "access_token_secret") if not getattr(self, name)
        ]
        if missing:
            raise ValueError(f"[x] {', '.join(missing)} must be set for posts, replies and DMs (OAuth 1.0a user context)")


def _pairs(values: Pairs | None) -> list[tuple[str, str]]:
    if values is None:
        return []
    items = values.items() if isinstance(values, Mapping) else values
    return [(str(k), str(v)) for k, v in items]


def authorization(
    credentials: Credentials,
    method: str,
    url: str,
    *,
    query: Pairs | None = None,
    form: Pairs | None = None,
    nonce: str | None = None,
    timestamp: int | str | None = None,
) -> str:
    """The ``Authorization: OAuth ...`` header value for one request.

    ``url`` may carry a query string already; ``query`` pairs are added to it (they must be
    sent exactly as given, since they are signed). ``form`` is the form-encoded body, signed
    too; a JSON body must not be passed here. ``nonce`` and ``timestamp`` are fresh per call
    unless given (tests pin them to X's documented example).
    """
    parts = urlsplit(url)
    extra = encode(query) if query is not None else ""
    full = urlunsplit(parts._replace(query="&".join(q for q in (parts.query, extra) if q), fragment=""))
    client = Client(
        credentials.consumer_key,
        client_secret=credentials.consumer_secret,
        resource_owner_key=credentials.access_token,
        resource_owner_secret=credentials.access_token_secret,
        signature_method=SIGNATURE_HMAC_SHA1,
        nonce=nonce,
        timestamp=None if timestamp is None else str(timestamp),
    )
    body = encode(form) if form is not None else None
    headers = {"Content-Type": FORM} if body is not None else {}
    _, signed, _ = client.sign(full, http_method=method.upper(), body=body, headers=headers)
    return signed["Authorization"]


def encode(pairs: Pairs) -> str:
    """Pairs as a query string or form body, percent-encoded as RFC 3986 (and RFC 5849 3.6)
    want: everything but ``A-Z a-z 0-9 - . _ ~`` escaped, a space as ``%20`` never ``+``.
    Sent exactly as signed, so the server decodes the bytes the signature covers."""
    return "&".join(f"{percent(k)}={percent(v)}" for k, v in _pairs(pairs))


def percent(value: str) -> str:
    """RFC 5849 3.6 percent-encoding of one key or value (UTF-8 first)."""
    return quote(value.encode("utf-8"), safe="-._~")
