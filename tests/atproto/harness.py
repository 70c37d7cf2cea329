"""The reference AT Protocol stack (PLC + PDS + AppView from @atproto/dev-env), run for the
tests by tests/atproto/driver.mjs.

``provision()`` installs Node 22 and dev-env into a cache outside the repository (once;
provision.sh), ``AtprotoStack.start()`` runs the driver and waits until the network is up,
and the stack's methods create accounts, posts, likes and follows, wait for the AppView to
index them, and read back what the AppView shows. One stack serves a whole test session
(about 6 s to start); each test uses accounts of its own (``unique_name``).

The methods are coroutines usable from any event loop (each pytest-asyncio test has its own):
the driver's pipes are served by a thread, not by a loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import json
import os
import random
import signal
import socket
import string
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

HERE = Path(__file__).resolve().parent
POSTGRES = os.environ.get("BRIDGE_TEST_POSTGRES", "postgres://postgres@127.0.0.1:5432/test")
REDIS = os.environ.get("BRIDGE_TEST_REDIS", "127.0.0.1:6379")
START_TIMEOUT = 120.0
CALL_TIMEOUT = 60.0


class HarnessError(RuntimeError):
    pass


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=3):
            return True
    except OSError:
        return False


def check_services() -> None:
    """Raise HarnessError naming what is missing when Postgres or Redis does not answer."""
    pg = urlparse(POSTGRES)
    redis_host, _, redis_port = REDIS.rpartition(":")
    missing = []
    if not _reachable(pg.hostname or "127.0.0.1", pg.port or 5432):
        missing.append(f"PostgreSQL at {pg.hostname}:{pg.port or 5432} (BRIDGE_TEST_POSTGRES)")
    if not _reachable(redis_host or "127.0.0.1", int(redis_port or 6379)):
        missing.append(f"Redis at {REDIS} (BRIDGE_TEST_REDIS)")
    if missing:
        raise HarnessError(
            "the AT Protocol test stack needs " + " and ".join(missing) + "; start them (.ci/run does) and run again"
        )


def provision() -> Path:
    """Install (first run) or find (later runs) the cached Node 22 + dev-env; its directory."""
    proc = subprocess.run(
        ["bash", str(HERE / "provision.sh")], stdout=subprocess.PIPE, stderr=None, text=True, timeout=1200, check=False
    )
    if proc.returncode != 0:
        raise HarnessError(f"tests/atproto/provision.sh failed with exit code {proc.returncode} (its output is above)")
    lines = proc.stdout.strip().splitlines()
    if not lines:
        raise HarnessError("tests/atproto/provision.sh printed no directory")
    return Path(lines[-1])


def schema_name() -> str:
    """A Postgres schema name for one run: letters and underscores only (dev-env refuses
    others)."""
    return "bridge_" + "".join(random.choices(string.ascii_lowercase, k=12))


_names = itertools.count(1)


def unique_name(prefix: str) -> str:
    """An account name not used before in this session: ``alice`` → ``alice7``. The digits
    keep it clear of the PDS's reserved words (``team``, ``teams``, ``acme`` … are refused),
    and a handle's first label must be 3-18 characters."""
    return f"{prefix[:12]}{next(_names)}"


@dataclass(frozen=True)
class Account:
    did: str
    handle: str
    password: str


@dataclass(frozen=True)
class Record:
    uri: str
    cid: str

    @property
    def ref(self) -> dict[str, str]:
        return {"uri": self.uri, "cid": self.cid}


class AtprotoStack:
    """A running dev-env network and the driver that controls it."""

    def __init__(self, proc: subprocess.Popen[str], info: dict[str, Any], log_path: Path) -> None:
        self.proc = proc
        self.pds: str = info["pds"]
        self.appview: str = info["appview"]
        self.plc: str = info["plc"]
        self.pds_did: str = info.get("pdsDid", "")
        self.schema: str = info["schema"]
        self.startup_seconds: float = info.get("startup_ms", 0) / 1000.0
        self.log_path = log_path
        self._ids = itertools.count(1)
        self._pending: dict[int, concurrent.futures.Future[Any]] = {}
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, name="atproto-driver", daemon=True)
        self._reader.start()

    # --- lifecycle ---------------------------------------------------------------------------

    @classmethod
    def start(cls, harness_dir: Path, search_url: str = "") -> AtprotoStack:
        """Start a network. ``search_url``: a search service the AppView asks for actor and
        post search (tests/atproto/search.py), as bsky.app's does."""
        check_services()
        node_bin = harness_dir / "node" / "bin"
        env = {
            **os.environ,
            "PATH": f"{node_bin}{os.pathsep}{os.environ.get('PATH', '')}",
            "ATPROTO_HARNESS_DIR": str(harness_dir),
            "ATPROTO_SCHEMA": schema_name(),
            "BRIDGE_TEST_POSTGRES": POSTGRES,
            "BRIDGE_TEST_REDIS": REDIS,
            **({"ATPROTO_SEARCH_URL": search_url} if search_url else {}),
        }
        log_fd, log_name = tempfile.mkstemp(prefix="atproto-driver-", suffix=".log")
        proc = subprocess.Popen(
            [str(node_bin / "node"), str(HERE / "driver.mjs")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log_fd,
            text=True,
            env=env,
            cwd=str(HERE),
            start_new_session=True,  # its own process group, killed as a whole at the end
        )
        os.close(log_fd)
        log_path = Path(log_name)
        deadline = time.monotonic() + START_TIMEOUT
        assert proc.stdout is not None
        while True:
            line = _readline_until(proc, deadline)
            if line is None:
                _kill_group(proc)
                raise HarnessError(
                    f"the AT Protocol stack did not start within {START_TIMEOUT:.0f}s "
                    f"(exit code {proc.poll()}); driver log:\n{_tail(log_path)}"
                )
            if line.startswith("@@ "):
                info = json.loads(line[3:])
                if info.get("ready"):
                    return cls(proc, info, log_path)

    def close(self) -> None:
        """Shut the network down (the driver drops its Postgres schemas), then make sure the
        whole process group is gone."""
        try:
            if self.proc.poll() is None and self.proc.stdin is not None:
                self.proc.stdin.close()  # the driver closes the network when stdin closes
            self.proc.wait(timeout=20)
        except (subprocess.TimeoutExpired, OSError):
            pass
        _kill_group(self.proc)
        for fut in list(self._pending.values()):
            if not fut.done():
                fut.set_exception(HarnessError("the AT Protocol stack was shut down"))

    # --- the driver protocol -----------------------------------------------------------------

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if not line.startswith("@@ "):
                continue
            try:
                msg = json.loads(line[3:])
            except ValueError:
                continue
            fut = self._pending.pop(msg.get("id"), None)
            if fut is None or fut.done():
                continue
            if msg.get("ok"):
                fut.set_result(msg.get("result"))
            else:
                fut.set_exception(HarnessError(msg.get("error", "driver error")))
        for fut in list(self._pending.values()):
            if not fut.done():
                fut.set_exception(HarnessError(f"the driver exited; its log:\n{_tail(self.log_path)}"))

    def call_sync(self, cmd: str, timeout: float = CALL_TIMEOUT, **args: Any) -> Any:
        return self._send(cmd, args).result(timeout)

    async def call(self, cmd: str, timeout: float = CALL_TIMEOUT, **args: Any) -> Any:
        return await asyncio.wait_for(asyncio.wrap_future(self._send(cmd, args)), timeout)

    def _send(self, cmd: str, args: dict[str, Any]) -> concurrent.futures.Future[Any]:
        if self.proc.poll() is not None or self.proc.stdin is None:
            raise HarnessError(f"the driver is not running; its log:\n{_tail(self.log_path)}")
        fut: concurrent.futures.Future[Any] = concurrent.futures.Future()
        with self._lock:
            msg_id = next(self._ids)
            self._pending[msg_id] = fut
            self.proc.stdin.write(json.dumps({"id": msg_id, "cmd": cmd, **args}) + "\n")
            self.proc.stdin.flush()
        return fut

    # --- helpers the tests read like -----------------------------------------------------------

    async def create_account(self, prefix: str, display_name: str | None = None, bio: str = "") -> Account:
        """A new account ``<prefix><suffix>.test``; with ``display_name``, a profile too (with
        ``bio`` as its description)."""
        args: dict[str, Any] = {"name": unique_name(prefix)}
        if display_name is not None:
            args["displayName"] = display_name
            args["description"] = bio
        r = await self.call("createAccount", **args)
        return Account(r["did"], r["handle"], r["password"])

    async def app_password(self, account: Account, name: str = "bridge") -> str:
        r = await self.call("createAppPassword", by=account.did, name=name)
        return r["password"]

    async def revoke_app_password(self, account: Account, name: str = "bridge") -> None:
        await self.call("revokeAppPassword", by=account.did, name=name)

    async def post(self, by: Account, text: str, **kw: Any) -> Record:
        """``kw``: facets, images=[{"alt": ...}], reply=Record (the parent), quote=Record, createdAt."""
        for key in ("reply", "quote"):
            if isinstance(kw.get(key), Record):
                kw[key] = kw[key].ref
        r = await self.call("post", by=by.did, text=text, **kw)
        return Record(r["uri"], r["cid"])

    async def repost(self, by: Account, subject: Record) -> Record:
        r = await self.call("repost", by=by.did, subject=subject.ref)
        return Record(r["uri"], r["cid"])

    async def like(self, by: Account, subject: Record) -> str:
        return (await self.call("like", by=by.did, subject=subject.ref))["uri"]

    async def follow(self, by: Account, subject: Account) -> Record:
        r = await self.call("follow", by=by.did, subject=subject.did)
        return Record(r["uri"], r["cid"])

    async def process_all(self) -> None:
        """Wait until the AppView has indexed everything the PDS has sequenced."""
        await self.call("processAll")

    async def query_appview(self, nsid: str, as_: Account | None = None, **params: Any) -> dict[str, Any]:
        args: dict[str, Any] = {"nsid": nsid, "params": params}
        if as_ is not None:
            args["as"] = as_.did
        return await self.call("appview", **args)

    async def thread(self, uri: str, depth: int = 6) -> dict[str, Any]:
        return (await self.query_appview("app.bsky.feed.getPostThread", uri=uri, depth=depth))["thread"]

    async def expired_access_token(self, account: Account) -> str:
        return (await self.call("expiredAccessToken", by=account.did))["accessJwt"]

    async def login_count(self, identifier: str) -> int:
        """createSession calls the PDS has seen for ``identifier`` (a handle)."""
        return int((await self.call("loginCount", identifier=identifier))["count"])

    @property
    def firehose_url(self) -> str:
        return self.pds.replace("http://", "ws://", 1).replace("https://", "wss://", 1)


def _readline_until(proc: subprocess.Popen[str], deadline: float) -> str | None:
    """The next stdout line, or None when the process ended or the deadline passed."""
    result: list[str] = []
    done = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        result.append(proc.stdout.readline())
        done.set()

    threading.Thread(target=read, daemon=True).start()
    if not done.wait(max(0.0, deadline - time.monotonic())):
        return None
    line = result[0]
    return line if line else None


def _kill_group(proc: subprocess.Popen[str]) -> None:
    try:
        pgid = os.getpgid(proc.pid)
    except ProcessLookupError:
        return
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            # the leader is gone; make sure no child of it lingers in the group
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue
        return


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
