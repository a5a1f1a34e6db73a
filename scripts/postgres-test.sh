#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the tests: initdb into a temporary
# directory, listen on a free loopback port, print ICA_TEST_POSTGRES (a
# superuser DSN; each test creates its own database).
#
#   eval "$(scripts/postgres-test.sh start)"   # start (or reuse) and export the DSN
#   scripts/postgres-test.sh env               # print the exports again
#   scripts/postgres-test.sh status            # exit 0 when it answers
#   scripts/postgres-test.sh stop              # stop it and delete its directory
#
# The cluster lives in $ICA_TEST_PG_DIR (default: $TMPDIR/ica-pgtest-<user>),
# so one developer has one cluster, and CI points the variable at a fresh
# temporary directory. It needs Debian's postgresql package (initdb, pg_ctl,
# psql). Run as root, the server runs as the postgres user. Everything it
# prints on stdout is shell code; messages go to stderr.
set -euo pipefail

DIR="${ICA_TEST_PG_DIR:-${TMPDIR:-/tmp}/ica-pgtest-$(id -un)}"
DATA="$DIR/data"
SOCK="$DIR/sock"
LOGDIR="$DIR/log"
ENVFILE="$DIR/env"
MARK=.ica-pgtest

log() { echo "postgres-test: $*" >&2; }
die() { log "$*"; exit 1; }

# pgbin finds a PostgreSQL server program: the PATH first, then Debian's
# versioned directories (newest first).
pgbin() {
  local p
  if p="$(command -v "$1" 2>/dev/null)"; then echo "$p"; return; fi
  for p in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k4 -n -r); do
    if [ -x "$p/$1" ]; then echo "$p/$1"; return; fi
  done
  die "$1 not found: install PostgreSQL (Debian: apt-get install postgresql)"
}

# as_owner runs a command as the cluster's owner: the postgres user when we
# are root (initdb and postgres refuse to run as root), else ourselves.
as_owner() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

# clear_dir deletes the cluster directory, but only one this script made
# (or an empty one): ICA_TEST_PG_DIR may point anywhere.
clear_dir() {
  [ -e "$DIR" ] || return 0
  if [ -f "$DIR/$MARK" ] || [ -z "$(ls -A "$DIR")" ]; then
    rm -rf "$DIR"
  else
    die "$DIR is not empty and was not made by $0; not touching it"
  fi
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

running() {
  [ -f "$ENVFILE" ] && [ -f "$DATA/postmaster.pid" ] &&
    as_owner "$(pgbin pg_ctl)" -D "$DATA" status >/dev/null 2>&1
}

print_env() {
  [ -f "$ENVFILE" ] || die "not running (no $ENVFILE); run: $0 start"
  cat "$ENVFILE"
}

start() {
  if running; then
    log "already running in $DIR"
    print_env
    return
  fi
  local initdb pg_ctl
  initdb="$(pgbin initdb)"
  pg_ctl="$(pgbin pg_ctl)"
  clear_dir
  mkdir -p "$DIR"
  chmod 755 "$DIR"
  touch "$DIR/$MARK"
  mkdir -p "$DATA" "$SOCK" "$LOGDIR"
  local password
  password="$(head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || die "no postgres user: install Debian's postgresql package"
    chown postgres: "$DATA" "$SOCK" "$LOGDIR"
    runuser -u postgres -- test -x "$DATA" ||
      die "the postgres user cannot reach $DATA: make its parent directories world-searchable (chmod o+x)"
  fi
  local pwfile="$SOCK/pw"
  printf '%s\n' "$password" >"$pwfile"
  [ "$(id -u)" = 0 ] && chown postgres: "$pwfile"
  chmod 600 "$pwfile"
  as_owner "$initdb" -D "$DATA" -U postgres --pwfile="$pwfile" --auth=scram-sha-256 \
    --encoding=UTF8 --locale=C >"$LOGDIR/initdb.log" 2>&1 || { cat "$LOGDIR/initdb.log" >&2; die "initdb failed"; }
  rm -f "$pwfile"

  local port tries=0
  while :; do
    tries=$((tries + 1))
    port=$((20000 + RANDOM % 40000))
    port_free "$port" || continue
    # Unix socket in our own directory (not /var/run/postgresql), TCP on
    # loopback only; enough connections for Mattermost's pool and parallel tests.
    if as_owner "$pg_ctl" -D "$DATA" -l "$LOGDIR/postgres.log" -w -t 60 \
      -o "-h 127.0.0.1 -p $port -k $SOCK -c max_connections=300" start >/dev/null; then
      break
    fi
    # Another process may have taken the port since we looked: try another.
    if [ "$tries" -ge 5 ] || ! grep -q "could not bind" "$LOGDIR/postgres.log" 2>/dev/null; then
      cat "$LOGDIR/postgres.log" >&2 || true
      die "could not start PostgreSQL"
    fi
    log "port $port was taken, trying another"
  done
  local dsn="postgres://postgres:$password@127.0.0.1:$port/postgres?sslmode=disable"
  {
    echo "export ICA_TEST_PG_DIR='$DIR'"
    echo "export ICA_TEST_POSTGRES='$dsn'"
  } >"$ENVFILE"
  chmod 600 "$ENVFILE"
  log "PostgreSQL $("$(pgbin postgres)" --version | awk '{print $3}') on 127.0.0.1:$port, data in $DATA"
  print_env
}

stop() {
  if [ -f "$DATA/postmaster.pid" ]; then
    as_owner "$(pgbin pg_ctl)" -D "$DATA" -m fast -w stop >/dev/null 2>&1 || log "pg_ctl stop failed"
  fi
  clear_dir
}

case "${1:-}" in
start) start ;;
stop) stop ;;
env) print_env ;;
status) running ;;
*) echo "usage: $0 start|stop|env|status" >&2; exit 2 ;;
esac
