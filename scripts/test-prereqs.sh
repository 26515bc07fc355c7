#!/usr/bin/env bash
# Provide what the whole test suite needs, then run the given command (`make test` runs
# `bash scripts/test-prereqs.sh .venv/bin/pytest -q`; .ci/run goes through `make test`):
#
# - curl, aria2c, openssl (clients of the relay, a certificate for the https test),
#   Debian's /usr/bin/chromium (the portal's browser test), promtool and systemd-analyze
#   (the checks of deploy/): installed with apt-get when
#   missing, as root where apt-get exists; otherwise this says which tests will skip.
# - PostgreSQL for the replicated-hub tests, unless SWARMGET_TEST_PG names one already:
#   scripts/ci-postgres.sh (Debian's server, present or installable as root: a private
#   cluster on 127.0.0.1:54329), else a self-contained server from PyPI (pgserver,
#   pip-installed into the tests' Python, listening on a Unix socket only). Its URL reaches
#   the command as SWARMGET_TEST_PG. SWARMGET_TEST_PG_FROM=debian|pgserver picks one.
#   With SWARMGET_REQUIRE_PG=1 (.ci/run) a PostgreSQL that cannot be had is an error.
#
# Idempotent and quick when everything is there: installed packages are not looked at
# again and a running server is reused (re-running costs a few psql calls).
#
#   SWARMGET_TEST_PYTHON   the tests' Python, for pgserver (default .venv/bin/python)
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${SWARMGET_TEST_PYTHON:-.venv/bin/python}"
PG_DIR="${SWARMGET_PG_DIR:-/var/tmp/swarmget-pg-$(id -u)}"

log() { echo "test-prereqs: $*" >&2; }
is_root() { [ "$(id -u)" -eq 0 ]; }
has_apt() { command -v apt-get >/dev/null 2>&1; }

system_packages() {
  local need=()
  command -v curl >/dev/null 2>&1 || need+=(curl)
  command -v aria2c >/dev/null 2>&1 || need+=(aria2)
  command -v openssl >/dev/null 2>&1 || need+=(openssl)
  [ -x /usr/bin/chromium ] || need+=(chromium)
  command -v promtool >/dev/null 2>&1 || need+=(prometheus)  # deploy/prometheus-alerts.yml, /metrics
  command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)  # deploy/systemd/*.service
  if [ ${#need[@]} -eq 0 ]; then
    return 0
  fi
  if is_root && has_apt; then
    log "installing ${need[*]}"
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >&2
  else
    log "missing ${need[*]}: install them (apt-get install ${need[*]}, as root);" \
      "until then the tests that use them skip"
  fi
}

debian_server_possible() {
  ls -d /usr/lib/postgresql/*/bin >/dev/null 2>&1 || { is_root && has_apt; }
}

# A pgserver cluster in $PG_DIR/pgserver, left running for the next run (like
# ci-postgres.sh); its superuser "postgres" may create the tests' throw-away databases.
pgserver_url() {
  if ! "$PYTHON" -c "import pgserver" 2>/dev/null; then
    log "installing pgserver (a self-contained PostgreSQL from PyPI) into $PYTHON"
    "$PYTHON" -m pip install --quiet pgserver >&2 || return 1
  fi
  mkdir -p "$PG_DIR"
  "$PYTHON" - "$PG_DIR/pgserver" <<'EOF'
import sys

import pgserver

server = pgserver.get_server(sys.argv[1], cleanup_mode=None)  # keeps running after us
print(server.get_uri().replace("postgresql://", "postgresql+asyncpg://", 1))
EOF
}

postgres_url() {
  case "${SWARMGET_TEST_PG_FROM:-auto}" in
    debian) bash scripts/ci-postgres.sh ;;
    pgserver) pgserver_url ;;
    auto)
      if debian_server_possible; then
        bash scripts/ci-postgres.sh
      else
        pgserver_url
      fi
      ;;
    *)
      log "SWARMGET_TEST_PG_FROM must be debian, pgserver or auto"
      return 2
      ;;
  esac
}

system_packages
if [ -n "${SWARMGET_TEST_PG:-}" ]; then
  log "PostgreSQL: using SWARMGET_TEST_PG as given"
elif url="$(postgres_url)" && [ -n "$url" ]; then
  export SWARMGET_TEST_PG="$url"
elif [ "${SWARMGET_REQUIRE_PG:-}" = 1 ]; then
  log "no PostgreSQL could be started, and SWARMGET_REQUIRE_PG=1"
  exit 1
else
  log "no PostgreSQL could be started: the replicated-hub tests skip"
fi

if [ $# -gt 0 ]; then
  exec "$@"
fi
