#!/usr/bin/env bash
# The whole test suite, from a fresh clone on a fresh machine:
#   1. a virtualenv (.venv) with the package and its dev extras;
#   2. PostgreSQL and Redis: the ones answering at 127.0.0.1:5432 / :6379, otherwise
#      throwaway ones started here from the binaries on the machine (and stopped at exit);
#   3. the AT Protocol reference stack (Node 22 + @atproto/dev-env), installed once into a
#      cache outside the repository by tests/atproto/provision.sh;
#   4. ruff, then pytest. Arguments are passed to pytest (e.g. tests/bridge -x).
# Exits non-zero when anything fails, and when pytest ran no test at all.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
say() { echo "tests/run.sh: $*" >&2; }

PY=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
  "$PY" -m venv .venv || { say "cannot create a virtualenv; install python3 (>= 3.11) with venv (apt-get install python3-venv)"; exit 1; }
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]' || { say "pip install failed (see above)"; exit 1; }

cleanup=()
on_exit() { for c in "${cleanup[@]}"; do eval "$c" >/dev/null 2>&1; done; }
trap on_exit EXIT
trap 'exit 130' INT TERM

answers() { .venv/bin/python -c "import socket,sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), 2)" "$1" "$2" 2>/dev/null; }
free_port() { .venv/bin/python -c "import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])"; }

if [[ -z "${BRIDGE_TEST_POSTGRES:-}" ]]; then
  if answers 127.0.0.1 5432; then
    export BRIDGE_TEST_POSTGRES="postgres://postgres@127.0.0.1:5432/test"
  else
    initdb=$(ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -n1)
    [[ -n "$initdb" ]] || { say "PostgreSQL does not answer at 127.0.0.1:5432 and is not installed; install it (apt-get install postgresql)"; exit 1; }
    bin=$(dirname "$initdb"); port=$(free_port); pgdir=$(mktemp -d)
    as=(); [[ $(id -u) == 0 ]] && { chown postgres "$pgdir"; as=(runuser -u postgres --); }
    "${as[@]}" "$bin/initdb" -D "$pgdir/data" -U postgres --auth=trust >/dev/null || { say "initdb failed"; exit 1; }
    "${as[@]}" "$bin/pg_ctl" -D "$pgdir/data" -o "-p $port -k $pgdir -c listen_addresses=127.0.0.1" -w start >/dev/null || { say "could not start a throwaway PostgreSQL"; exit 1; }
    cleanup+=("${as[*]} $bin/pg_ctl -D $pgdir/data -m immediate stop; rm -rf $pgdir")
    "${as[@]}" "$bin/createdb" -h 127.0.0.1 -p "$port" -U postgres test
    export BRIDGE_TEST_POSTGRES="postgres://postgres@127.0.0.1:$port/test"
    say "started a throwaway PostgreSQL on port $port"
  fi
fi

if [[ -z "${BRIDGE_TEST_REDIS:-}" ]]; then
  if answers 127.0.0.1 6379; then
    export BRIDGE_TEST_REDIS="127.0.0.1:6379"
  else
    command -v redis-server >/dev/null || { say "Redis does not answer at 127.0.0.1:6379 and is not installed; install it (apt-get install redis-server)"; exit 1; }
    port=$(free_port)
    redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --daemonize no >/dev/null &
    cleanup+=("kill $!")
    for _ in $(seq 50); do answers 127.0.0.1 "$port" && break; sleep 0.1; done
    export BRIDGE_TEST_REDIS="127.0.0.1:$port"
    say "started a throwaway Redis on port $port"
  fi
fi

bash tests/atproto/provision.sh >/dev/null || { say "installing the AT Protocol test stack failed (see above); it needs npm and a C++ compiler (apt-get install npm g++ make)"; exit 1; }

.venv/bin/ruff check . || { say "ruff found problems (see above); run .venv/bin/ruff check --fix ."; exit 1; }

.venv/bin/python -m pytest "$@"
rc=$?
if [[ $rc == 5 ]]; then
  say "pytest ran no tests"
  exit 1
fi
exit $rc
