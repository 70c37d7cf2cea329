"""The Dockerfile installs and runs the bridge as README.md says, and (where a Docker daemon
answers) the image builds and reports healthy."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import time
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def dockerfile() -> dict[str, list[str]]:
    """Instructions by keyword, continuation lines joined."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            keyword, _, rest = line.strip().partition(" ")
            out.setdefault(keyword.upper(), []).append(rest.strip())
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


def _docker_answers() -> str:
    if shutil.which("docker") is None:
        return "no docker command on this machine"
    probe = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=30)
    return "" if probe.returncode == 0 else "the Docker daemon does not answer (docker info failed)"


@pytest.mark.timeout(900)
def test_image_builds_and_turns_healthy(tmp_path: Path) -> None:
    why = _docker_answers()
    if why:
        pytest.skip(why)
    tag = "microblog-chat-bridge:test"
    subprocess.run(["docker", "build", "-t", tag, str(ROOT)], check=True, timeout=800)
    cfg = tmp_path / "config.toml"
    cfg.write_text('[database]\nurl = "sqlite:///tmp/bridge.sqlite3"\n[http]\nlisten = "0.0.0.0:8080"\n')
    cfg.chmod(0o644)
    name = f"bridge-test-{int(time.time())}"
    subprocess.run(
        ["docker", "run", "-d", "--name", name, "--health-interval=2s", "-v", f"{cfg}:/config/config.toml:ro", tag],
        check=True,
        timeout=60,
    )
    try:
        status = ""
        for _ in range(60):
            status = subprocess.run(
                ["docker", "inspect", "-f", "{{.State.Health.Status}}", name], capture_output=True, text=True
            ).stdout.strip()
            if status in ("healthy", "unhealthy"):
                break
            time.sleep(1)
        assert status == "healthy"
        user = subprocess.run(["docker", "exec", name, "id", "-u"], capture_output=True, text=True).stdout.strip()
        assert user != "0"
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)
