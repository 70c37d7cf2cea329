"""The real ``bridge run`` as a child process, the way an operator runs it.

``BridgeProcess`` starts ``python -m bridge -c CONFIG run`` in its own process group, keeps
everything it writes to stderr (one file per run, so secrets can be scanned afterwards), lets
a test wait for a log line, and kills it (SIGKILL: a crash) or stops it (SIGTERM: a clean
shutdown). ``close()`` makes sure the whole process group is gone.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def bridge_command(config: Path, *args: str) -> list[str]:
    """The command line of ``bridge -c CONFIG ARGS…`` with this interpreter (the project's venv)."""
    return [sys.executable, "-m", "bridge", "-c", str(config), *args]


def run_cli(config: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run a short ``bridge`` command (status, subs, check) to completion."""
    return subprocess.run(bridge_command(config, *args), cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False)


class BridgeProcess:
    """One ``bridge run`` process. ``log_path`` holds its stderr."""

    def __init__(self, config: Path, log_path: Path, env: dict[str, str] | None = None) -> None:
        self.config = config
        self.log_path = log_path
        self._log = open(log_path, "ab")  # the child writes to it until it ends
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(
            bridge_command(config, "run"),
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._log,
            env={**os.environ, **(env or {})},
            start_new_session=True,  # its own process group: killed as a whole
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    async def wait_log(self, needle: str, timeout: float = 30.0, count: int = 1) -> None:
        """Wait until ``needle`` appears ``count`` times in the log; fail if the process ends first."""
        deadline = time.monotonic() + timeout
        while self.log_text().count(needle) < count:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"bridge run exited with {self.proc.returncode} before logging {needle!r}:\n{self.log_text()[-3000:]}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"bridge run did not log {needle!r} within {timeout}s:\n{self.log_text()[-3000:]}")
            await asyncio.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL, as a crash or the OOM killer would; returns once the process is gone."""
        self._signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self._log.close()

    async def terminate(self, timeout: float) -> int | None:
        """SIGTERM, then wait up to ``timeout`` s; the exit code, or None if it was still running."""
        self._signal(signal.SIGTERM)
        return await self.wait_exit(timeout)

    async def wait_exit(self, timeout: float) -> int | None:
        """The exit code once the process ended, or None if it still runs after ``timeout`` s."""
        try:
            return await asyncio.to_thread(self.proc.wait, timeout)
        except subprocess.TimeoutExpired:
            return None

    def close(self) -> None:
        """Kill the process group if anything of it is left."""
        if self.proc.poll() is None:
            self._signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
        if not self._log.closed:
            self._log.close()

    def _signal(self, sig: int) -> None:
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass
