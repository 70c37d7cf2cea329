"""The Dockerfile installs and runs the bridge as README.md says, and (where a Docker daemon
answers) the image builds and reports healthy."""

from __future__ import annotations

import asyncio
import json
import re
import shlex
import shutil
import socket
import subprocess
import time
import tomllib
from pathlib import Path

import pytest

from tests.emulators.telegram import TelegramEmulator

ROOT = Path(__file__).resolve().parents[2]


def dockerfile() -> dict[str, list[str]]:
    """Instructions by keyword."""
    out: dict[str, list[str]] = {}
    for keyword, rest in instructions():
        out.setdefault(keyword, []).append(rest)
    return out


def instructions() -> list[tuple[str, str]]:
    """(keyword, rest) in order, continuation lines joined."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    out = []
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            keyword, _, rest = line.strip().partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def readme_install() -> list[str]:
    """The README's install-and-run line, split at && and ;."""
    line = next(line for line in (ROOT / "README.md").read_text().splitlines() if "pip install" in line)
    return [part.strip() for part in re.split(r"&&|;", line)]


def test_dockerfile_installs_and_runs_as_the_readme_says() -> None:
    d = dockerfile()
    steps = readme_install()
    venv, pip, run = steps[0], steps[1], steps[-1]
    assert venv == "python3 -m venv .venv" and pip.startswith(".venv/bin/pip install -e .") and run == ".venv/bin/bridge run"
    install = next(r for r in d["RUN"] if "pip install" in r)
    parts = [p.strip() for p in install.split("&&")]
    assert parts[0] == venv
    assert shlex.split(parts[1])[:2] == shlex.split(pip)[:2] and shlex.split(pip)[2:] == shlex.split(parts[1])[-2:]
    assert json.loads(d["CMD"][-1]) == shlex.split(run)
    assert d["FROM"][0].startswith("python:") and d["FROM"][0].endswith("-slim")
    # not root: a USER before the install and the command, and the Python the README asks for
    assert d["USER"] and d["USER"][-1] != "root"
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    version = d["FROM"][0].split(":")[1].split("-")[0]
    assert tuple(map(int, version.split("."))) >= tuple(map(int, requires.lstrip(">=").split(".")))
    health = d["HEALTHCHECK"][0]
    assert "/healthz" in health and "127.0.0.1:8080" in health
    assert "BRIDGE_CONFIG=/config/config.toml" in " ".join(d["ENV"])
    compose = (ROOT / "compose.yaml").read_text()
    assert "postgres:" in compose and "/config/config.toml" in compose
    assert set((ROOT / "Procfile").read_text().split()) >= {"worker:", "web:"}


def test_dockerfile_reads_right_without_a_daemon() -> None:
    """What ``docker build`` would trip on, read from the file: what it copies exists, the
    user can write where it installs, and the command is the package's own ``bridge`` script."""
    steps = instructions()
    for keyword, rest in steps:
        if keyword == "COPY":
            sources = [p for p in shlex.split(rest) if not p.startswith("--")][:-1]
            for source in sources:
                assert (ROOT / source).exists(), f"COPY {source}: no such file in the repository"
    workdir = next(rest for keyword, rest in steps if keyword == "WORKDIR")
    user_at = next(i for i, (keyword, _) in enumerate(steps) if keyword == "USER")
    user = steps[user_at][1]
    # The venv is created as that user in WORKDIR: the directory must be theirs (WORKDIR alone
    # creates it owned by root).
    owned = [rest for keyword, rest in steps[:user_at] if keyword == "RUN" and workdir in rest and user in rest]
    assert owned and any(f"-o {user}" in r or f"chown {user}" in r for r in owned), owned
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["bridge"] == "bridge.cli:main"
    cmd = json.loads(next(rest for keyword, rest in reversed(steps) if keyword == "CMD"))
    assert cmd == [".venv/bin/bridge", "run"]
    # SIGTERM drains in-flight sends (bridge run's clean shutdown).
    assert ("STOPSIGNAL", "SIGTERM") in steps


def test_compose_passes_every_variable_the_configs_name() -> None:
    """A config written by ``bridge init`` or copied from config.example.toml finds its
    ${VAR}s in the container's environment."""
    from bridge.cli.init import ENV_NAMES

    compose = (ROOT / "compose.yaml").read_text()
    passed = set(re.findall(r"^\s+([A-Z][A-Z0-9_]+):", compose, re.MULTILINE))
    example = (ROOT / "config.example.toml").read_text()
    named = set(ENV_NAMES.values()) | set(re.findall(r"^[^#\n]*\$\{([A-Z0-9_]+)\}", example, re.MULTILINE))
    assert named and named <= passed, sorted(named - passed)


def _docker_answers() -> str:
    if shutil.which("docker") is None:
        return "no docker command on this machine"
    probe = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=30)
    return "" if probe.returncode == 0 else "the Docker daemon does not answer (docker info failed)"


@pytest.mark.timeout(900)
async def test_image_builds_and_turns_healthy(tmp_path: Path) -> None:
    """Where a Docker daemon answers: the image builds, runs as a user that is not root, and its
    HEALTHCHECK turns healthy with a config from the mounted file (Telegram on the emulator, on
    the host's network so that 127.0.0.1 is the test's) and SQLite on the /data volume."""
    why = _docker_answers()
    if why:
        pytest.skip(why)
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", 8080)) == 0:
            pytest.skip("port 8080 is taken on this machine (the image's HEALTHCHECK asks 127.0.0.1:8080)")
    tag = "microblog-chat-bridge:test"
    await asyncio.to_thread(subprocess.run, ["docker", "build", "-t", tag, str(ROOT)], check=True, timeout=800)
    async with TelegramEmulator(token="123456:container-test-token") as tg:
        cfg = tmp_path / "config.toml"
        cfg.write_text(
            '[database]\nurl = "sqlite:///data/bridge.sqlite3"\n'
            '[http]\nlisten = "127.0.0.1:8080"\n'
            f'[telegram]\ntoken = "${{TELEGRAM_BOT_TOKEN}}"\napi_url = "{tg.url}"\npoll_timeout = 1\n'
        )
        cfg.chmod(0o644)  # read by the image's own user
        name = f"bridge-test-{int(time.time())}"
        run = ["docker", "run", "-d", "--name", name, "--network", "host", "--health-interval=2s"]
        run += ["-e", f"TELEGRAM_BOT_TOKEN={tg.token}", "-v", f"{cfg}:/config/config.toml:ro", tag]
        await asyncio.to_thread(subprocess.run, run, check=True, timeout=60)
        try:
            status = ""
            for _ in range(90):
                inspect = ["docker", "inspect", "-f", "{{.State.Health.Status}}", name]
                done = await asyncio.to_thread(subprocess.run, inspect, capture_output=True, text=True)
                status = done.stdout.strip()
                if status in ("healthy", "unhealthy"):
                    break
                await asyncio.sleep(1)
            logs = await asyncio.to_thread(subprocess.run, ["docker", "logs", name], capture_output=True, text=True)
            assert status == "healthy", logs.stderr[-3000:]
            user = await asyncio.to_thread(subprocess.run, ["docker", "exec", name, "id", "-u"], capture_output=True, text=True)
            assert user.stdout.strip() not in ("", "0")
            assert tg.token not in logs.stdout + logs.stderr
        finally:
            await asyncio.to_thread(subprocess.run, ["docker", "rm", "-f", name], capture_output=True)
