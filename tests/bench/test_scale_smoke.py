"""bench.scale with small sizes: every post reaches its rooms and the figures are printed."""

from __future__ import annotations

import random

import pytest

from bench import scale


def test_every_post_is_routed_to_the_rooms_of_its_source() -> None:
    matcher, sources = scale.build(200, random.Random(1))
    assert len(matcher) == 200 and len(sources) == 100
    items = scale.posts_for(sources, random.Random(2))[:500]
    for item in items:
        routes = matcher.match(item)
        assert all(r.source == item.source for r in routes)
        assert len(routes) <= 2
    assert sum(len(matcher.match(i)) for i in items) > 500  # most posts go to both rooms


def test_command_prints_memory_and_cost(capsys: pytest.CaptureFixture[str]) -> None:
    scale.main(["--sizes", "200,400", "--no-save"])
    out = capsys.readouterr().out
    assert "| 200 |" in out and "| 400 |" in out
    assert "per subscription" in out and "µs" in out
