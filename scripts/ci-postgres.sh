#!/usr/bin/env bash
# A private PostgreSQL server for the tests of the replicated hub.
#
# Installs Debian's postgresql when no server binaries are there (as root), creates once a
# cluster in $SWARMGET_PG_DIR (default /var/tmp/swarmget-pg), starts it unless it already
# runs, listening on 127.0.0.1:$SWARMGET_PG_PORT (default 54329) only, creates once the role
# and database "swarmget" (password "swarmget"; CREATEDB, so tests make throw-away
# databases), and prints the SQLAlchemy URL on stdout; everything else goes to stderr.
#
# Idempotent: running it again (another CI run on the same machine) reuses the cluster. It is
# a test cluster: fsync is off, and a data directory of another major version is replaced.
# As root the server runs as the "postgres" user (it refuses to run as root).
#
#   SWARMGET_TEST_PG="$(bash scripts/ci-postgres.sh)"
set -euo pipefail

PORT="${SWARMGET_PG_PORT:-54329}"
BASE="${SWARMGET_PG_DIR:-/var/tmp/swarmget-pg}"
DATA="$BASE/data"
SOCKETS="$BASE/run"
NAME=swarmget

log() { echo "ci-postgres: $*" >&2; }
server_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }

cd /  # the server's user may not be allowed into the caller's directory

bin="$(server_bin)"
if [ -z "$bin" ] || [ ! -x "$bin/initdb" ]; then
  if [ "$(id -u)" -ne 0 ]; then
    log "PostgreSQL server binaries are missing; run as root (apt-get install postgresql)"
    exit 1
  fi
  log "installing postgresql"
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
  bin="$(server_bin)"
fi
major="$(basename "$(dirname "$bin")")"

if [ "$(id -u)" -eq 0 ]; then
  owner=postgres
  as_owner() { runuser -u postgres -- "$@"; }
else
  owner="$(id -un)"
  as_owner() { "$@"; }
fi

running() { as_owner "$bin/pg_ctl" -D "$DATA" status >/dev/null 2>&1; }

mkdir -p "$BASE"
chown "$owner" "$BASE"
if [ -f "$DATA/PG_VERSION" ] && [ "$(cat "$DATA/PG_VERSION")" != "$major" ]; then
  log "replacing a PostgreSQL $(cat "$DATA/PG_VERSION") cluster with a $major one"
  running && as_owner "$bin/pg_ctl" -D "$DATA" -m immediate stop >&2 || true
  rm -rf "$DATA"
fi
if [ ! -f "$DATA/PG_VERSION" ]; then
  log "creating a PostgreSQL $major cluster in $DATA"
  rm -rf "$DATA"
  as_owner mkdir -p "$DATA" "$SOCKETS"
  as_owner "$bin/initdb" -D "$DATA" --auth-local=trust --auth-host=scram-sha-256 \
    --encoding=UTF8 --locale=C >&2
  cat >>"$DATA/postgresql.conf" <<'EOF'
# swarmget test cluster (scripts/ci-postgres.sh): throw-away data, speed over durability
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 200
EOF
fi
as_owner mkdir -p "$SOCKETS"

if running; then
  log "reusing the running cluster in $DATA"
else
  log "starting PostgreSQL $major on 127.0.0.1:$PORT"
  if ! as_owner "$bin/pg_ctl" -D "$DATA" -l "$BASE/server.log" -w -t 60 \
      -o "-c listen_addresses=127.0.0.1 -p $PORT -k $SOCKETS" start >&2; then
    log "PostgreSQL did not start; the end of $BASE/server.log:"
    tail -n 20 "$BASE/server.log" >&2 || true
    exit 1
  fi
fi

sql() {
  as_owner "$bin/psql" -h "$SOCKETS" -p "$PORT" -d postgres -v ON_ERROR_STOP=1 -qtAX -c "$1"
}
if [ "$(sql "SELECT 1 FROM pg_roles WHERE rolname = '$NAME'")" != 1 ]; then
  sql "CREATE ROLE $NAME LOGIN CREATEDB PASSWORD '$NAME'" >&2
fi
if [ "$(sql "SELECT 1 FROM pg_database WHERE datname = '$NAME'")" != 1 ]; then
  sql "CREATE DATABASE $NAME OWNER $NAME" >&2
fi

echo "postgresql+asyncpg://$NAME:$NAME@127.0.0.1:$PORT/$NAME"
