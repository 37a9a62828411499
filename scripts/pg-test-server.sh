#!/usr/bin/env bash
# A private, throwaway PostgreSQL for tests: its own data directory, loopback only.
#   scripts/pg-test-server.sh start DIR PORT   initdb (once) and start; database and role `fairdraw`
#   scripts/pg-test-server.sh stop DIR         fast shutdown (no-op when not running)
#   scripts/pg-test-server.sh url DIR PORT     prints the postgresql:// URL to connect with
# Layout: DIR/data (cluster), DIR/sock (unix socket), DIR/log (server log). Every step is
# bounded in time and idempotent. Never touches the distribution's cluster (port 5432).
# Runs as root (the server itself then runs as `postgres`) or as any other user.
set -euo pipefail

usage() {
  echo "usage: $0 start DIR PORT | stop DIR | url DIR PORT" >&2
  exit 2
}

die() {
  echo "pg-test-server: $*" >&2
  exit 1
}

# The newest installed server, unless PG_BIN names one.
find_bin() {
  if [ -n "${PG_BIN:-}" ]; then
    echo "$PG_BIN"
    return
  fi
  local found=""
  for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/initdb" ] && found="$d"
  done
  [ -n "$found" ] || die "no PostgreSQL server found under /usr/lib/postgresql (apt-get install postgresql)"
  echo "$found"
}

# Settings from the caller's environment would redirect pg_ctl or psql elsewhere.
unset PGDATA PGHOST PGHOSTADDR PGPORT PGUSER PGDATABASE PGPASSWORD PGSERVICE PGOPTIONS

readonly ROLE=fairdraw
readonly PASSWORD=fairdraw
readonly DATABASE=fairdraw

[ $# -ge 2 ] || usage
cmd="$1"
dir="$2"
port="${3:-}"
case "$dir" in
  /*) ;;
  *) dir="$(pwd)/$dir" ;;
esac
dir="${dir%/}"
case "$dir" in
  *"'"* | *'"'* | *' '*) die "DIR must not contain quotes or spaces: $dir" ;;
esac

check_port() {
  [ -n "$port" ] || usage
  if ! [[ "$port" =~ ^[0-9]+$ ]] || [ "$port" -lt 1024 ] || [ "$port" -gt 65535 ]; then
    die "PORT must be a number in 1024..65535, got '$port'"
  fi
  [ "$port" -ne 5432 ] || die "port 5432 belongs to the system cluster; pick another (e.g. 55432)"
}

# The server refuses to run as root: as root, everything runs as `postgres`.
as_owner() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

url() {
  echo "postgresql://$ROLE:$PASSWORD@127.0.0.1:$port/$DATABASE"
}

running() {
  [ -f "$dir/data/postmaster.pid" ] &&
    as_owner timeout 10 "$bin/pg_ctl" status -D "$dir/data" >/dev/null 2>&1
}

psql_admin() {
  as_owner timeout 30 "$bin/psql" -X -q -v ON_ERROR_STOP=1 -h "$dir/sock" -p "$port" \
    -U postgres -d postgres -tA "$@"
}

start() {
  check_port
  mkdir -p "$dir"
  if [ "$(id -u)" -eq 0 ]; then
    getent passwd postgres >/dev/null || die "user 'postgres' is missing (apt-get install postgresql)"
    chown postgres: "$dir"
    as_owner test -x "$dir" || die "user 'postgres' cannot reach $dir (a parent directory is closed to it)"
  fi
  chmod 700 "$dir"

  # One start at a time per directory; the lock file lives beside the cluster.
  exec 9>>"$dir/.lock"
  flock -w 120 9 || die "timed out waiting for another start on $dir"

  # Unix socket paths are limited to 107 bytes.
  local socket="$dir/sock/.s.PGSQL.$port"
  [ "${#socket}" -le 100 ] || die "DIR is too long for a unix socket path: $socket"

  if [ ! -f "$dir/data/PG_VERSION" ]; then
    rm -rf "$dir/data"
    as_owner mkdir -p "$dir/data" "$dir/sock"
    # trust on loopback only: this cluster exists for tests and listens nowhere else.
    as_owner timeout 120 "$bin/initdb" -D "$dir/data" -U postgres -E UTF8 --no-locale \
      --auth-local=trust --auth-host=trust --no-instructions >"$dir/initdb.log" 2>&1 ||
      { cat "$dir/initdb.log" >&2; die "initdb failed in $dir/data"; }
    echo "include_if_exists = 'fairdraw_test.conf'" >>"$dir/data/postgresql.conf"
  fi
  as_owner mkdir -p "$dir/sock"

  if running; then
    # Already up (idempotent start); it must be the port we were asked for.
    local current
    current="$(sed -n 4p "$dir/data/postmaster.pid" 2>/dev/null || true)"
    [ "$current" = "$port" ] || die "already running in $dir on port $current, not $port"
  else
    # Rewritten on every start, so a restart may pick another port.
    as_owner tee "$dir/data/fairdraw_test.conf" >/dev/null <<EOF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir/sock'
fsync = on
synchronous_commit = on
full_page_writes = on
max_connections = 200
shared_buffers = 64MB
logging_collector = off
log_min_messages = warning
log_line_prefix = '%m [%p] %q%u@%d '
EOF
    as_owner touch "$dir/log"
    # 9>&-: the server must not inherit (and so hold forever) the start lock.
    if ! as_owner timeout 60 "$bin/pg_ctl" start -w -t 45 -D "$dir/data" -l "$dir/log" \
      >/dev/null 2>&1 9>&-; then
      tail -n 20 "$dir/log" >&2 || true
      die "server did not start in $dir on port $port (see $dir/log)"
    fi
  fi

  # Role and database, created once.
  if [ "$(psql_admin -c "SELECT 1 FROM pg_roles WHERE rolname = '$ROLE'")" != "1" ]; then
    psql_admin -c "CREATE ROLE $ROLE LOGIN CREATEDB PASSWORD '$PASSWORD'" >/dev/null
  fi
  if [ "$(psql_admin -c "SELECT 1 FROM pg_database WHERE datname = '$DATABASE'")" != "1" ]; then
    psql_admin -c "CREATE DATABASE $DATABASE OWNER $ROLE" >/dev/null
  fi
  # The target database answers over TCP, as the service will connect.
  as_owner timeout 15 "$bin/pg_isready" -q -h 127.0.0.1 -p "$port" -d "$DATABASE" -t 10 ||
    die "server in $dir does not answer on 127.0.0.1:$port"
}

stop() {
  [ -f "$dir/data/PG_VERSION" ] || return 0
  running || return 0
  if ! as_owner timeout 45 "$bin/pg_ctl" stop -D "$dir/data" -m fast -w -t 30 >/dev/null 2>&1; then
    # A fast shutdown that hangs (a stuck client) is cut short; the next start recovers from WAL.
    as_owner timeout 20 "$bin/pg_ctl" stop -D "$dir/data" -m immediate -w -t 15 >/dev/null 2>&1 ||
      die "server in $dir did not stop"
  fi
}

bin="$(find_bin)"
case "$cmd" in
  start) start ;;
  stop) stop ;;
  url)
    check_port
    url
    ;;
  *) usage ;;
esac
