"""Generated ``com.atproto.sync.subscribeRepos`` frames, byte for byte as a relay sends them.

A frame is two DAG-CBOR values back to back: the header ``{op: 1, t: "#commit"}`` and the
body (seq, repo, rev, ops with their CIDs, the commit's CID, and ``blocks``: a CAR v1 file
holding the commit, the record and the MST nodes that changed). CIDs are CIDv1, dag-cbor,
sha-256, encoded with CBOR tag 42 as the spec says; libipld (what the adapter decodes with)
has no encoder for tag 42 or CAR files, so both are written here.
"""

from __future__ import annotations

import hashlib
import random
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

# The mix of event kinds on the live network (order of magnitude, from public firehose
# statistics): mostly likes, then posts and follows, then reposts, deletions and
# identity/account events, which are not commits.
MIX: Sequence[tuple[str, float]] = (
    ("like", 0.55),
    ("post", 0.15),
    ("follow", 0.15),
    ("repost", 0.08),
    ("delete", 0.05),
    ("identity", 0.02),
)
COLLECTION = {
    "like": "app.bsky.feed.like",
    "post": "app.bsky.feed.post",
    "follow": "app.bsky.graph.follow",
    "repost": "app.bsky.feed.repost",
    "delete": "app.bsky.feed.like",
}


@dataclass(frozen=True, slots=True)
class Cid:
    """A CID as its binary form (CIDv1, dag-cbor, sha-256)."""

    raw: bytes

    @classmethod
    def of(cls, block: bytes) -> Cid:
        return cls(bytes([0x01, 0x71, 0x12, 0x20]) + hashlib.sha256(block).digest())


def _head(major: int, n: int) -> bytes:
    if n < 24:
        return bytes([major << 5 | n])
    if n < 0x100:
        return bytes([major << 5 | 24, n])
    if n < 0x10000:
        return bytes([major << 5 | 25]) + struct.pack(">H", n)
    if n < 0x100000000:
        return bytes([major << 5 | 26]) + struct.pack(">I", n)
    return bytes([major << 5 | 27]) + struct.pack(">Q", n)


def dag_cbor(value: Any) -> bytes:
    """DAG-CBOR of ``value`` (dict with str keys, list, str, bytes, int, bool, None, Cid)."""
    if value is None:
        return b"\xf6"
    if value is True:
        return b"\xf5"
    if value is False:
        return b"\xf4"
    if isinstance(value, int):
        return _head(0, value) if value >= 0 else _head(1, -1 - value)
    if isinstance(value, str):
        data = value.encode()
        return _head(3, len(data)) + data
    if isinstance(value, bytes):
        return _head(2, len(value)) + value
    if isinstance(value, Cid):
        return b"\xd8\x2a" + dag_cbor(b"\x00" + value.raw)  # tag 42, multibase identity prefix
    if isinstance(value, list | tuple):
        return _head(4, len(value)) + b"".join(dag_cbor(v) for v in value)
    if isinstance(value, dict):
        # DAG-CBOR: map keys sorted by length, then bytewise.
        keys = sorted(value, key=lambda k: (len(k.encode()), k.encode()))
        return _head(5, len(keys)) + b"".join(dag_cbor(k) + dag_cbor(value[k]) for k in keys)
    raise TypeError(f"cannot encode {type(value).__name__}")


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def car(root: Cid, blocks: Sequence[tuple[Cid, bytes]]) -> bytes:
    """A CAR v1 file: the header, then each block as varint(length) CID data."""
    header = dag_cbor({"roots": [root], "version": 1})
    out = [_varint(len(header)), header]
    for cid, data in blocks:
        out += [_varint(len(cid.raw) + len(data)), cid.raw, data]
    return b"".join(out)


def did(n: int) -> str:
    """A did:plc-shaped identifier for account ``n``."""
    alphabet = "abcdefghijklmnopqrstuvwxyz234567"
    digits = []
    for _ in range(24):
        n, r = divmod(n, 32)
        digits.append(alphabet[r])
    return "did:plc:" + "".join(reversed(digits))


def _tid(rng: random.Random) -> str:
    return "".join(rng.choice("234567abcdefghijklmnopqrstuvwxyz") for _ in range(13))


def record(kind: str, rng: random.Random, subject_did: str, now: str) -> dict[str, Any]:
    if kind == "post":
        words = " ".join(rng.choice(("pricing", "outage", "hello", "launch", "coffee", "team", "today")) for _ in range(12))
        return {"$type": "app.bsky.feed.post", "text": f"{words} {rng.randrange(10**6)}", "langs": ["en"], "createdAt": now}
    if kind in ("like", "repost", "delete"):
        uri = f"at://{subject_did}/app.bsky.feed.post/{_tid(rng)}"
        strong = {"uri": uri, "cid": Cid.of(uri.encode())}
        kind_type = "app.bsky.feed.repost" if kind == "repost" else "app.bsky.feed.like"
        return {"$type": kind_type, "subject": strong, "createdAt": now}
    return {"$type": "app.bsky.graph.follow", "subject": subject_did, "createdAt": now}


def frame(seq: int, kind: str, repo: str, rng: random.Random) -> bytes:
    """One frame of ``kind`` (see MIX) by ``repo``."""
    now = "2026-01-01T00:00:00.000Z"
    if kind == "identity":
        return dag_cbor({"op": 1, "t": "#identity"}) + dag_cbor(
            {"seq": seq, "did": repo, "time": now, "handle": f"user{seq}.bsky.social"}
        )
    rkey = _tid(rng)
    path = f"{COLLECTION[kind]}/{rkey}"
    blocks: list[tuple[Cid, bytes]] = []
    if kind == "delete":
        op = {"action": "delete", "path": path, "cid": None}
    else:
        data = dag_cbor(record(kind, rng, did(rng.randrange(10**9)), now))
        cid = Cid.of(data)
        blocks.append((cid, data))
        op = {"action": "create", "path": path, "cid": cid}
    # The MST nodes on the path to the record: a few hundred bytes each.
    for _ in range(3):
        node = dag_cbor({"e": [{"k": rng.randbytes(24), "p": 0, "t": None, "v": Cid.of(rng.randbytes(8))}] * 4, "l": None})
        blocks.append((Cid.of(node), node))
    commit = dag_cbor({"did": repo, "rev": rkey, "sig": rng.randbytes(64), "data": blocks[-1][0], "prev": None, "version": 3})
    commit_cid = Cid.of(commit)
    blocks.insert(0, (commit_cid, commit))
    body = {
        "seq": seq,
        "repo": repo,
        "rev": rkey,
        "since": None,
        "time": now,
        "commit": commit_cid,
        "rebase": False,
        "tooBig": False,
        "ops": [op],
        "blobs": [],
        "blocks": car(commit_cid, blocks),
    }
    return dag_cbor({"op": 1, "t": "#commit"}) + dag_cbor(body)


def stream(n: int, followed: Sequence[str], followed_share: float = 0.01, seed: int = 7) -> Iterator[bytes]:
    """``n`` frames with the live mix; ``followed_share`` of them by the ``followed`` accounts."""
    rng = random.Random(seed)
    kinds = [k for k, _ in MIX]
    weights = [w for _, w in MIX]
    for seq in range(1, n + 1):
        repo = rng.choice(followed) if rng.random() < followed_share else did(10**6 + rng.randrange(10**8))
        yield frame(seq, rng.choices(kinds, weights)[0], repo, rng)
