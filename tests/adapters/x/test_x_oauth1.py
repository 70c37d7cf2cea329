"""OAuth 1.0a signing (adapters/x/oauth1.py) against the worked examples of X's docs and of
RFC 5849, and against the emulator's independent verifier."""

from __future__ import annotations

import base64
import hashlib
import hmac
from urllib.parse import unquote

import pytest

from adapters.x.oauth1 import Credentials, authorization, encode, percent
from tests.emulators.x import base_string, parse_oauth_header

# https://docs.x.com/fundamentals/authentication/oauth-1-0a/creating-a-signature
DOC = Credentials(
    consumer_key="xvz1evFS4wEEPTGEFPHBog",
    consumer_secret="kAcSOqF21Fu85e7zjz7ZN2U4ZRhfV3WpwPAoE3Z7kBw",
    access_token="370773112-GmHxMAgYyLbNEtIKZeRNFsMKPR9EyMZeS9weJAEb",
    access_token_secret="LswwdoUaIvS8ltyTt5jkRh4J50vUPVVHtR2YPi5kE",
)
DOC_NONCE = "kYjzVBB8Y0ZFabxSWbWovY3uYSQ2pTgmZeNu2VS4cg"
DOC_TIMESTAMP = 1318622958
DOC_BASE = (
    "POST&https%3A%2F%2Fapi.twitter.com%2F1.1%2Fstatuses%2Fupdate.json&"
    "include_entities%3Dtrue%26oauth_consumer_key%3Dxvz1evFS4wEEPTGEFPHBog%26"
    "oauth_nonce%3DkYjzVBB8Y0ZFabxSWbWovY3uYSQ2pTgmZeNu2VS4cg%26"
    "oauth_signature_method%3DHMAC-SHA1%26oauth_timestamp%3D1318622958%26"
    "oauth_token%3D370773112-GmHxMAgYyLbNEtIKZeRNFsMKPR9EyMZeS9weJAEb%26"
    "oauth_version%3D1.0%26status%3DHello%2520Ladies%2520%252B%2520Gentlemen"
    "%252C%2520a%2520signed%2520OAuth%2520request%2521"
)
DOC_SIGNATURE = "hCtSmYh+iHYCEqBWrE7C7hYmtUk="


def test_the_documented_request_is_signed_as_the_docs_show() -> None:
    header = authorization(
        DOC,
        "POST",
        "https://api.twitter.com/1.1/statuses/update.json",
        query={"include_entities": "true"},
        form={"status": "Hello Ladies + Gentlemen, a signed OAuth request!"},
        nonce=DOC_NONCE,
        timestamp=DOC_TIMESTAMP,
    )
    fields = parse_oauth_header(header)
    assert fields["oauth_signature"] == DOC_SIGNATURE
    assert fields["oauth_consumer_key"] == DOC.consumer_key
    assert fields["oauth_token"] == DOC.access_token
    assert fields["oauth_signature_method"] == "HMAC-SHA1"
    assert "kAcSOqF21" not in header and "LswwdoUa" not in header  # secrets never travel


def test_the_emulators_verifier_builds_the_documented_base_string() -> None:
    params = [
        ("include_entities", "true"),
        ("status", "Hello Ladies + Gentlemen, a signed OAuth request!"),
        ("oauth_consumer_key", DOC.consumer_key),
        ("oauth_nonce", DOC_NONCE),
        ("oauth_signature_method", "HMAC-SHA1"),
        ("oauth_timestamp", str(DOC_TIMESTAMP)),
        ("oauth_token", DOC.access_token),
        ("oauth_version", "1.0"),
    ]
    base = base_string("POST", "https://api.twitter.com/1.1/statuses/update.json", params)
    assert base == DOC_BASE
    key = f"{DOC.consumer_secret}&{DOC.access_token_secret}".encode()
    assert base64.b64encode(hmac.new(key, base.encode(), hashlib.sha1).digest()).decode() == DOC_SIGNATURE


def test_rfc5849_example_base_string() -> None:
    # RFC 5849 3.4.1.1: query b5, a3, c@, a2; form body c2, a3; repeated names sort by value.
    params = [
        ("b5", "=%3D"),
        ("a3", "a"),
        ("c@", ""),
        ("a2", "r b"),
        ("c2", ""),
        ("a3", "2 q"),
        ("oauth_consumer_key", "9djdj82h48djs9d2"),
        ("oauth_token", "kkk9d7dh3k39sjv7"),
        ("oauth_signature_method", "HMAC-SHA1"),
        ("oauth_timestamp", "137131201"),
        ("oauth_nonce", "7d8f3e4a"),
    ]
    assert base_string("POST", "http://example.com/request", params) == (
        "POST&http%3A%2F%2Fexample.com%2Frequest&a2%3Dr%2520b%26a3%3D2%2520q"
        "%26a3%3Da%26b5%3D%253D%25253D%26c%2540%3D%26c2%3D%26oauth_consumer_"
        "key%3D9djdj82h48djs9d2%26oauth_nonce%3D7d8f3e4a%26oauth_signature_m"
        "ethod%3DHMAC-SHA1%26oauth_timestamp%3D137131201%26oauth_token%3Dkkk"
        "9d7dh3k39sjv7"
    )


def test_the_rfc5849_example_request_signs_like_the_independent_verifier() -> None:
    creds = Credentials("9djdj82h48djs9d2", "j49sk3j29djd", "kkk9d7dh3k39sjv7", "dh893hdasih9")
    header = authorization(
        creds,
        "POST",
        "http://example.com/request?b5=%3D%253D&a3=a&c%40=&a2=r%20b",
        form=[("c2", ""), ("a3", "2 q")],
        nonce="7d8f3e4a",
        timestamp=137131201,
    )
    fields = parse_oauth_header(header)
    params = [("b5", "=%3D"), ("a3", "a"), ("c@", ""), ("a2", "r b"), ("c2", ""), ("a3", "2 q")]
    params += [(k, v) for k, v in fields.items() if k != "oauth_signature"]
    base = base_string("POST", "http://example.com/request", params)
    expected = base64.b64encode(hmac.new(b"j49sk3j29djd&dh893hdasih9", base.encode(), hashlib.sha1).digest()).decode()
    assert fields["oauth_signature"] == expected


# https://docs.x.com/fundamentals/authentication/oauth-1-0a/percent-encoding-parameters
@pytest.mark.parametrize(
    ("raw", "encoded"),
    [
        ("Ladies + Gentlemen", "Ladies%20%2B%20Gentlemen"),
        ("An encoded string!", "An%20encoded%20string%21"),
        ("Dogs, Cats & Mice", "Dogs%2C%20Cats%20%26%20Mice"),
        ("☃", "%E2%98%83"),
        ("-._~", "-._~"),
        ("a/b?c=d", "a%2Fb%3Fc%3Dd"),
    ],
)
def test_percent_encoding(raw: str, encoded: str) -> None:
    assert percent(raw) == encoded
    assert unquote(encoded) == raw


def test_a_query_is_sent_as_signed() -> None:
    assert encode({"query": "from:alice has:links", "max_results": "10"}) == "query=from%3Aalice%20has%3Alinks&max_results=10"


def test_missing_keys_are_named() -> None:
    with pytest.raises(ValueError, match="consumer_secret, access_token_secret"):
        Credentials("key", "", "token", "")


def test_secrets_stay_out_of_repr() -> None:
    assert "kAcSOqF21" not in repr(DOC) and "LswwdoUa" not in repr(DOC)
