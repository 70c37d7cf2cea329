"""bench.firehose and its frame generator: frames the adapter decodes, filtered as it must."""

from __future__ import annotations

import random

import pytest

from bench import firehose
from bench.frames import did, frame, stream


def test_a_followed_accounts_post_is_queued_and_the_rest_is_not() -> None:
    followed = did(1)
    fh = firehose.firehose_for([followed])
    rng = random.Random(1)
    fh._frame(frame(1, "post", followed, rng))
    fh._frame(frame(2, "like", followed, rng))  # a like is not relayed
    fh._frame(frame(3, "post", did(2), rng))  # not followed
    fh._frame(frame(4, "identity", did(3), rng))
    assert fh.seq == 4 and fh.frames == 4
    assert fh.queue.qsize() == 1 and fh.cars_decoded == 1
    event = fh.queue.get_nowait()
    assert event.repo == followed and event.path.startswith("app.bsky.feed.post/")
    assert event.record["$type"] == "app.bsky.feed.post" and event.record["text"]


def test_generated_frames_are_about_the_size_of_real_ones() -> None:
    frames = list(stream(300, [did(1)]))
    assert 1200 < sum(map(len, frames)) / len(frames) < 2500


def test_command_prints_frames_per_second(capsys: pytest.CaptureFixture[str]) -> None:
    firehose.main(["--frames", "300", "--followed", "10", "--share", "0.5", "--runs", "1", "--no-save"])
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("| 300 |"))
    rate, queued = row.split("|")[4], int(row.split("|")[5])
    assert float(rate.split()[0].replace(",", "")) > 0
    assert queued > 0  # half the frames are by followed accounts: some are posts or reposts
