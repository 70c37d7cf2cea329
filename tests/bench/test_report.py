"""The figures a benchmark prints are appended to RESULTS.md with the date and the machine."""

from __future__ import annotations

from pathlib import Path

from bench.report import percentile, publish


def test_publish_appends_a_dated_section_with_the_machine(tmp_path: Path) -> None:
    results = tmp_path / "RESULTS.md"
    publish("Demo", ["| a | b |", "| 1 | 2 |"], path=results)
    publish("Demo again", ["x"], path=results)
    text = results.read_text()
    assert text.startswith("# Benchmark results")
    assert text.count("## Demo") == 2 and "## Demo again: 20" in text
    assert "cores" in text and "Python 3" in text
    assert "| 1 | 2 |" in text


def test_publish_without_save_writes_nothing(tmp_path: Path) -> None:
    results = tmp_path / "RESULTS.md"
    section = publish("Dry", ["y"], save=False, path=results)
    assert "## Dry" in section and not results.exists()


def test_percentiles_are_nearest_rank() -> None:
    values = list(range(1, 101))
    assert (percentile(values, 50), percentile(values, 95), percentile(values, 99)) == (50, 95, 99)
    assert percentile([7.0], 99) == 7.0
