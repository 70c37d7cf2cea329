"""The firehose reports how far behind real time its frames are (bridge_stream_lag_seconds),
from the frames' own ``time``, on one frame in LAG_EVERY."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from adapters.bluesky.firehose import LAG_EVERY, Firehose
from bench.frames import stream


def test_lag_is_read_from_the_frames_time() -> None:
    lags: list[float] = []
    unused: Any = None
    fh = Firehose("ws://127.0.0.1:1", unused, unused, dict, lambda _did, _cid: "", lag=lags.append)
    for frame in stream(2 * LAG_EVERY, ["did:plc:nobody"]):
        fh._frame(frame)
    # the generated frames are stamped 2026-01-01T00:00:00Z
    expected = (datetime.now(UTC) - datetime(2026, 1, 1, tzinfo=UTC)).total_seconds()
    assert len(lags) == 2 and all(abs(lag - expected) < 60 for lag in lags)
