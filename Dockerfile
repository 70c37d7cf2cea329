# The bridge as a container: `docker compose up` (compose.yaml) or
#   docker build -t bridge . && docker run -v ./config.toml:/config/config.toml:ro -v bridge-data:/data -p 8080:8080 bridge
# Config comes from the mounted file (BRIDGE_CONFIG) and its ${VAR}s from the environment.
FROM python:3.12-slim

# A user of its own: the bridge never needs root. WORKDIR would create /app owned by root, where
# that user could not create the venv: make /app (and /data, for an SQLite file) its own first.
RUN useradd --create-home --uid 10001 bridge && install -d -o bridge -g bridge /app /data
WORKDIR /app
COPY --chown=bridge:bridge pyproject.toml README.md ./
COPY --chown=bridge:bridge bridge ./bridge
COPY --chown=bridge:bridge adapters ./adapters
USER bridge
# Installed as README.md installs it.
RUN python3 -m venv .venv && .venv/bin/pip install --no-cache-dir -e .

ENV BRIDGE_CONFIG=/config/config.toml \
    PYTHONUNBUFFERED=1
# SQLite in a container: [database] url = "sqlite:///data/bridge.sqlite3" on this volume, or the
# ledger goes with the container. compose.yaml uses PostgreSQL instead.
VOLUME /data
# The config's [http] listen must be "0.0.0.0:8080" for the health check and for Telegram's webhook.
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD [".venv/bin/python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4).status != 200)"]
# SIGTERM (docker stop) drains in-flight sends; give it more than [bridge] shutdown_timeout.
STOPSIGNAL SIGTERM
CMD [".venv/bin/bridge", "run"]
