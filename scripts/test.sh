#!/usr/bin/env bash
# The whole test suite: what a newcomer runs, and exactly what CI runs.
#
# Installs what the tests need when it is missing (PostgreSQL server
# binaries; the tests start their own PostgreSQL on 127.0.0.1), then runs
# rustfmt, clippy with warnings as errors, and every test with --locked.
set -euo pipefail
cd "$(dirname "$0")/.."

# Keep the build cache outside the clone so repeat runs are fast.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/warrant-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# Two cores: do not oversubscribe the machine with test threads that each
# start servers.
export RUST_TEST_THREADS="${RUST_TEST_THREADS:-4}"

say() { printf '==> %s\n' "$*"; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "error: need root to install packages (run as root or install sudo): $*" >&2; exit 1; fi
}

apt_updated=0
apt_install() {
  if ! command -v apt-get >/dev/null; then
    echo "error: $* missing and apt-get is not available; install it by hand" >&2; exit 1
  fi
  if [ "$apt_updated" -eq 0 ]; then as_root apt-get update -qq; apt_updated=1; fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

pg_bindir() {
  if command -v pg_config >/dev/null && [ -x "$(pg_config --bindir)/initdb" ]; then pg_config --bindir; return; fi
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  if [ -n "$d" ] && [ -x "$d/initdb" ]; then echo "$d"; return; fi
  command -v initdb >/dev/null && dirname "$(command -v initdb)"
}

if [ -z "$(pg_bindir)" ]; then
  say "installing PostgreSQL server packages"
  apt_install postgresql
fi
say "PostgreSQL for tests: $(pg_bindir)"
if [ "$(id -u)" -eq 0 ] && ! id postgres >/dev/null 2>&1; then
  # initdb refuses to run as root; the test harness runs it as `postgres`.
  as_root useradd --system --no-create-home --shell /usr/sbin/nologin postgres
fi

# --- warrant-engines: a real sshd for the `ssh` engine's tests ------------
# crates/engines/tests/ssh.rs starts its own sshd (/usr/sbin/sshd, or
# $WARRANT_SSHD) on 127.0.0.1 with a config in a temp dir, and logs in with
# the real ssh client. They never use or change a system sshd service.
if [ -z "${WARRANT_SSHD:-}" ] && { [ ! -x /usr/sbin/sshd ] || ! command -v ssh >/dev/null || ! command -v ssh-keygen >/dev/null; }; then
  say "installing the OpenSSH server and client"
  apt_install openssh-server openssh-client
fi
say "sshd for tests: $("${WARRANT_SSHD:-/usr/sbin/sshd}" -V 2>&1 | head -n 1)"
# ---------------------------------------------------------------------------

# --- git over HTTP: nginx, fcgiwrap and git -----------------------------
# crates/cli/tests/it/git_nginx.rs serves bare repositories with
# `git http-backend` under fcgiwrap behind nginx (`auth_request` pointed at
# Warrant's forward auth), each started by the test on 127.0.0.1 with a
# config in a temp dir, and clones and pushes with the real git client. They
# never use or change a system nginx. The test FAILS (never skips) when one
# of them is missing.
have_sbin() { command -v "$1" >/dev/null || [ -x "/usr/sbin/$1" ]; }
if ! have_sbin nginx || ! have_sbin fcgiwrap || ! command -v git >/dev/null; then
  say "installing nginx-light, fcgiwrap and git"
  apt_install nginx-light fcgiwrap git
fi
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)
say "nginx for tests: $("$nginx_bin" -v 2>&1), $(git --version)"
# ---------------------------------------------------------------------------

# --- warrant-identity: a real OIDC issuer for its tests -------------------
# crates/identity's tests run npm `oauth2-mock-server` on 127.0.0.1 through
# Node.js. The test harness installs the package itself (into
# $WARRANT_NPM_CACHE, default ~/.cache/warrant-npm) and fails when it cannot;
# here we only make sure Node.js and npm exist.
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  say "installing Node.js and npm"
  apt_install nodejs npm
fi
say "Node.js for tests: $(node --version)"
# ---------------------------------------------------------------------------

# --- independent verifiers: Python PyJWT and securesystemslib -----------
# crates/server's tests verify run tokens with PyJWT's PyJWKClient against
# /.well-known/jwks.json; crates/attest's tests check approval attestations
# (DSSE envelopes) with securesystemslib. They use $WARRANT_PYTHON, else the
# venv below, and fail (never skip) when a package cannot be imported.
venv="$HOME/.cache/warrant-venv"
if [ -z "${WARRANT_PYTHON:-}" ] && ! "$venv/bin/python" -c 'import jwt, cryptography, securesystemslib.dsse' 2>/dev/null; then
  if ! command -v python3 >/dev/null; then
    say "installing Python 3"
    apt_install python3 python3-venv
  fi
  say "installing PyJWT and securesystemslib into $venv"
  python3 -m venv "$venv" || { apt_install python3-venv; python3 -m venv "$venv"; }
  "$venv/bin/pip" install --quiet 'pyjwt[crypto]' 'securesystemslib[crypto]'
fi
# ---------------------------------------------------------------------------

# --- warrant-gateway: a real MCP upstream and the official MCP client ----
# crates/gateway's tests drive the gateway with the Python MCP SDK (`mcp`
# from PyPI, in the venv above or $WARRANT_PYTHON) against the real npm
# `@modelcontextprotocol/server-everything` over stdio (in $WARRANT_NPM_CACHE,
# default ~/.cache/warrant-npm). The test harness installs both itself when
# missing and fails (never skips) when it cannot; installing here keeps the
# downloads out of the timed test run. Versions are pinned in
# crates/gateway/tests/it/harness.rs.
if [ -z "${WARRANT_PYTHON:-}" ] && ! "$venv/bin/python" -c 'import mcp.client.streamable_http' 2>/dev/null; then
  say "installing the Python MCP SDK into $venv"
  "$venv/bin/pip" install --quiet 'mcp==2.3.0'
fi
npm_cache="${WARRANT_NPM_CACHE:-$HOME/.cache/warrant-npm}"
# crates/server's MCP tests also run `server-filesystem` (argument policies).
for pkg in server-everything server-filesystem; do
  if [ ! -f "$npm_cache/node_modules/@modelcontextprotocol/$pkg/dist/index.js" ]; then
    say "installing @modelcontextprotocol/$pkg into $npm_cache"
    mkdir -p "$npm_cache"
    npm install --no-audit --no-fund --prefix "$npm_cache" "@modelcontextprotocol/$pkg@2026.8.31" >/dev/null
  fi
done
# ---------------------------------------------------------------------------

# --- agent hooks: the real Claude Code CLI -------------------------------
# crates/cli/tests/it/claude_code.rs runs `claude -p` (npm
# @anthropic-ai/claude-code, a ~380 MB native binary shipped in its optional
# dependency @anthropic-ai/claude-code-linux-x64) under `warrant exec`, with
# `warrant hook claude-code` as its hook, against a fake model API on
# loopback. The test installs it into $WARRANT_NPM_CACHE itself when missing
# and FAILS (never skips) when it cannot; installing here keeps the download
# out of the timed test run.
claude_pkg="@anthropic-ai/claude-code@2.1.330"
claude_bin="$npm_cache/node_modules/@anthropic-ai/claude-code/bin/claude.exe"
if ! "$claude_bin" --version 2>/dev/null | grep -q '^2\.1\.330 '; then
  say "installing $claude_pkg into $npm_cache (about 380 MB)"
  mkdir -p "$npm_cache"
  if ! npm install --no-audit --no-fund --prefix "$npm_cache" "$claude_pkg" >/dev/null \
    || ! "$claude_bin" --version >/dev/null 2>&1; then
    echo "error: cannot install or run $claude_pkg (needed by crates/cli/tests/it/claude_code.rs, issue 8 acceptance 2)" >&2
    exit 1
  fi
fi
say "Claude Code for tests: $("$claude_bin" --version)"
# ---------------------------------------------------------------------------

say "cargo fmt --check"
cargo fmt --all -- --check

say "cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

say "cargo test"
cargo test --workspace --locked --no-fail-fast
