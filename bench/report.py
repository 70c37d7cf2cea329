"""What every benchmark shares: the machine it ran on, medians, and appending figures to
bench/RESULTS.md (one dated section per run)."""

from __future__ import annotations

import datetime
import logging
import math
import os
import platform
import statistics
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from bridge import logs

RESULTS = Path(__file__).with_name("RESULTS.md")


def machine() -> str:
    """CPU model, core count, memory and Python: enough to compare two runs."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kb / 1024 / 1024:.0f} GB RAM"
    except (OSError, ValueError, IndexError):
        pass
    return f"{cpu}, {os.cpu_count()} cores{mem}, Python {platform.python_version()} on {platform.system()}"


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of ``values``."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, min(len(ordered), math.ceil(p / 100 * len(ordered))))
    return ordered[rank - 1]


def publish(title: str, lines: Sequence[str], *, save: bool = True, path: Path = RESULTS) -> str:
    """Print the figures and, when ``save``, append them to RESULTS.md with the date, the
    machine and the exact command. Returns the section as written."""
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    main = sys.modules["__main__"]
    module = main.__spec__.name if getattr(main, "__spec__", None) else Path(sys.argv[0]).stem
    command = " ".join(["python -m", module, *sys.argv[1:]])
    section = "\n".join([f"## {title}: {stamp}", "", f"Machine: {machine()}  ", f"Command: `{command}`", "", *lines, "", ""])
    print(section)
    if save:
        if not path.exists():
            path.write_text("# Benchmark results\n\nAppended by each benchmark command (see README.md); newest last.\n\n")
        with path.open("a") as f:
            f.write(section)
    return section


def log_to_file(bench: str) -> Path:
    """Log at the production level (info), as a running bridge does, to a file in the temp
    directory rather than the terminal the figures are printed to; returns the file."""
    logfile = Path(tempfile.gettempdir()) / f"bridge-bench-{bench}.log"
    logs.setup("info")
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(logfile.open("a"))
    return logfile
