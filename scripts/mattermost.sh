#!/usr/bin/env bash
# A real Mattermost Team Edition 6.7.2 server for the tests (internal/mmreal,
# the contract suite of bot/mmtest), server only, on loopback.
#
#   eval "$(scripts/mattermost.sh start)"  # build if needed, start, export ICA_TEST_MATTERMOST_*
#   scripts/mattermost.sh build            # only build (or find) the cached binary
#   scripts/mattermost.sh env              # print the exports again
#   scripts/mattermost.sh status           # exit 0 when it answers
#   scripts/mattermost.sh down             # stop the server only: data, database,
#                                          # tokens and port are kept for "up"
#   scripts/mattermost.sh up               # start it again after "down": same URL,
#                                          # same data (for tests of an outage)
#   scripts/mattermost.sh stop             # stop it (and the PostgreSQL it started)
#
# Build: the Go module github.com/mattermost/mattermost-server/v6@v6.7.2 is
# downloaded into the module cache and copied to a writable directory (its
# go.mod has a replace directive, so `go install` refuses it), then
# ./cmd/mattermost is built with -ldflags=-checklinkname=0 (its old
# golang.org/x/net needs that on Go >= 1.23). The copy and the binary are
# kept in $ICA_MATTERMOST_CACHE (default
# ${XDG_CACHE_HOME:-$HOME/.cache}/ica/mattermost-6.7.2), outside the
# repository, and reused by later runs.
#
# Start: the server runs from that source tree (it reads i18n/, templates/,
# fonts/ from it) with a generated config: loopback SiteURL on a free port,
# its own database on the test PostgreSQL (ICA_TEST_POSTGRES, or a cluster
# that scripts/postgres-test.sh starts for it), bot accounts, personal access
# tokens and slash commands on (user name and icon overrides off, as by
# default and as bot/mmtest reports), loopback integrations allowed, plugins,
# telemetry, notices, marketplace, e-mail and rate limiting off. The first
# user becomes the system admin; its personal access token is exported as
# ICA_TEST_MATTERMOST_TOKEN next to ICA_TEST_MATTERMOST_URL. Run-time state
# lives in $ICA_TEST_MM_DIR (default $TMPDIR/ica-mmtest-<user>).
#
# Everything printed on stdout is shell code; messages go to stderr.
set -euo pipefail

VERSION=6.7.2
MODULE=github.com/mattermost/mattermost-server/v6
HERE="$(cd "$(dirname "$0")" && pwd)"
CACHE="${ICA_MATTERMOST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ica/mattermost-$VERSION}"
SRC="$CACHE/src"
BIN="$SRC/bin/mattermost"
STAMP="$CACHE/built"
DIR="${ICA_TEST_MM_DIR:-${TMPDIR:-/tmp}/ica-mmtest-$(id -un)}"
ENVFILE="$DIR/env"
MARK=.ica-mmtest

log() { echo "mattermost: $*" >&2; }
die() { log "$*"; exit 1; }

export GOFLAGS=-buildvcs=false GOWORK=off

build() {
  if [ -x "$BIN" ] && [ -f "$STAMP" ]; then
    log "using the cached build in $SRC ($(cat "$STAMP"))"
    return
  fi
  command -v go >/dev/null || die "go is not on PATH"
  local t0 info dir tmp
  t0=$(date +%s)
  log "downloading $MODULE@v$VERSION"
  # Outside any module, so ICA's go.mod is neither read nor changed.
  info="$(cd / && go mod download -json "$MODULE@v$VERSION")" || die "go mod download failed: $info"
  dir="$(printf '%s\n' "$info" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')"
  [ -n "$dir" ] && [ -d "$dir" ] || die "go mod download gave no directory: $info"

  mkdir -p "$CACHE"
  tmp="$(mktemp -d "$CACHE/build.XXXXXX")"
  # A trap would not see tmp after this function; clean up on failure here.
  if ! (
    set -e
    cp -R "$dir" "$tmp/src"
    chmod -R u+w "$tmp/src"
    # The module zip keeps vendor/modules.txt but no vendored code; with it
    # the go command would insist on -mod=vendor.
    rm -rf "$tmp/src/vendor"
    cd "$tmp/src"
    local x="$MODULE/model"
    log "building ./cmd/mattermost (a few minutes the first time)"
    go build -mod=mod -trimpath -o bin/mattermost \
      -ldflags "-checklinkname=0 -X $x.BuildNumber=$VERSION -X $x.BuildHash=v$VERSION -X $x.BuildHashEnterprise=none -X $x.BuildEnterpriseReady=false -X $x.BuildDate=n/a" \
      ./cmd/mattermost >&2
  ); then
    rm -rf "$tmp"
    die "build failed"
  fi
  rm -rf "$SRC" "$STAMP"
  mv "$tmp/src" "$SRC"
  rmdir "$tmp"
  echo "Mattermost $VERSION, $(go env GOVERSION), built $(date -u +%FT%TZ)" >"$STAMP"
  log "built in $(($(date +%s) - t0)) s: $BIN"
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

free_port() {
  local p
  for _ in $(seq 1 50); do
    p=$((20000 + RANDOM % 40000))
    if port_free "$p"; then echo "$p"; return; fi
  done
  die "no free port found"
}

pid_alive() { [ -f "$DIR/pid" ] && kill -0 "$(cat "$DIR/pid")" 2>/dev/null; }

running() {
  [ -f "$ENVFILE" ] && pid_alive || return 1
  # shellcheck disable=SC1090
  (. "$ENVFILE" && curl -fsS -m 5 "$ICA_TEST_MATTERMOST_URL/api/v4/system/ping" >/dev/null 2>&1)
}

print_env() {
  [ -f "$ENVFILE" ] || die "not running (no $ENVFILE); run: $0 start"
  cat "$ENVFILE"
}

# clear_dir deletes the state directory, but only one this script made (or
# an empty one): ICA_TEST_MM_DIR may point anywhere.
clear_dir() {
  [ -e "$DIR" ] || return 0
  if [ -f "$DIR/$MARK" ] || [ -z "$(ls -A "$DIR")" ]; then
    rm -rf "$DIR"
  else
    die "$DIR is not empty and was not made by $0; not touching it"
  fi
}

# api METHOD PATH [JSON] prints the response body; fails on HTTP >= 400.
api() {
  local method=$1 path=$2 body=${3:-}
  local args=(-sS -m 30 -X "$method" -H 'Content-Type: application/json' -H 'X-Requested-With: XMLHttpRequest')
  [ -n "${TOKEN:-}" ] && args+=(-H "Authorization: Bearer $TOKEN")
  [ -n "$body" ] && args+=(--data "$body")
  local out code
  out="$(curl "${args[@]}" -w '\n%{http_code}' "$URL$path")" || die "$method $path: curl failed"
  code="${out##*$'\n'}"
  out="${out%$'\n'*}"
  [ "$code" -lt 400 ] || die "$method $path: HTTP $code: $out"
  printf '%s' "$out"
}

# json_field NAME reads the first "NAME":"value" of a flat JSON object on stdin.
json_field() { sed -n 's/.*"'"$1"'":"\([^"]*\)".*/\1/p' | head -n1; }

start() {
  if running; then
    log "already running ($DIR)"
    print_env
    return
  fi
  command -v curl >/dev/null || die "curl is needed (apt-get install curl)"
  command -v psql >/dev/null || die "psql is needed (apt-get install postgresql-client)"
  build
  if pid_alive; then kill "$(cat "$DIR/pid")" 2>/dev/null || true; fi
  clear_dir
  mkdir -p "$DIR/data" "$DIR/logs" "$DIR/plugins" "$DIR/client-plugins"
  touch "$DIR/$MARK"
  local t0 pgenv=""
  t0=$(date +%s)

  if [ -z "${ICA_TEST_POSTGRES:-}" ]; then
    log "ICA_TEST_POSTGRES is unset: starting a PostgreSQL cluster for Mattermost"
    pgenv="$(ICA_TEST_PG_DIR="$DIR/postgres" "$HERE/postgres-test.sh" start)"
    eval "$pgenv"
    touch "$DIR/own-postgres"
  fi
  case "$ICA_TEST_POSTGRES" in
  postgres://* | postgresql://*) ;;
  *) die "ICA_TEST_POSTGRES must be a postgres:// URL" ;;
  esac
  local db dsn
  db="ica_mattermost_$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  psql -X -q -v ON_ERROR_STOP=1 "$ICA_TEST_POSTGRES" -c "CREATE DATABASE $db" >/dev/null ||
    die "could not create database $db on ICA_TEST_POSTGRES"
  echo "$db" >"$DIR/database"
  # Same server and credentials, other database; keep the query (sslmode).
  dsn="$(printf '%s' "$ICA_TEST_POSTGRES" | sed -E "s#^(postgres(ql)?://[^/?]*)(/[^?]*)?#\\1/$db#")"
  case "$dsn" in *\?*) dsn="$dsn&connect_timeout=10" ;; *) dsn="$dsn?connect_timeout=10" ;; esac

  local port
  port="$(free_port)"
  URL="http://127.0.0.1:$port"
  cat >"$DIR/config.json" <<EOF
{
  "ServiceSettings": {
    "SiteURL": "$URL",
    "ListenAddress": "127.0.0.1:$port",
    "EnableBotAccountCreation": true,
    "EnableUserAccessTokens": true,
    "EnableCommands": true,
    "EnablePostUsernameOverride": false,
    "EnablePostIconOverride": false,
    "EnableIncomingWebhooks": true,
    "EnableOutgoingWebhooks": true,
    "AllowedUntrustedInternalConnections": "127.0.0.1 localhost",
    "EnableLinkPreviews": false,
    "EnablePermalinkPreviews": false,
    "EnableGifPicker": false,
    "EnableSecurityFixAlert": false,
    "EnableLocalMode": false,
    "EnableDeveloper": false,
    "EnableTesting": false,
    "EnableAPITeamDeletion": true,
    "EnableAPIChannelDeletion": true,
    "EnableAPIUserDeletion": true
  },
  "TeamSettings": {
    "EnableOpenServer": false,
    "MaxUsersPerTeam": 1000,
    "EnableUserCreation": true
  },
  "SqlSettings": {
    "DriverName": "postgres",
    "DataSource": "$dsn",
    "MaxOpenConns": 40,
    "MaxIdleConns": 10
  },
  "FileSettings": {
    "DriverName": "local",
    "Directory": "$DIR/data/"
  },
  "LogSettings": {
    "EnableConsole": true,
    "ConsoleLevel": "ERROR",
    "ConsoleJson": false,
    "EnableFile": true,
    "FileLevel": "INFO",
    "FileJson": true,
    "FileLocation": "$DIR/logs",
    "EnableDiagnostics": false
  },
  "NotificationLogSettings": {
    "EnableConsole": false,
    "EnableFile": false
  },
  "EmailSettings": {
    "RequireEmailVerification": false,
    "SendEmailNotifications": false,
    "SendPushNotifications": false,
    "EnableSignUpWithEmail": true,
    "EnableSignInWithEmail": true,
    "EnableSignInWithUsername": true,
    "EnablePreviewModeBanner": false
  },
  "RateLimitSettings": {
    "Enable": false
  },
  "PluginSettings": {
    "Enable": false,
    "EnableUploads": false,
    "EnableHealthCheck": false,
    "EnableMarketplace": false,
    "EnableRemoteMarketplace": false,
    "AutomaticPrepackagedPlugins": false,
    "RequirePluginSignature": false,
    "Directory": "$DIR/plugins",
    "ClientDirectory": "$DIR/client-plugins"
  },
  "AnnouncementSettings": {
    "AdminNoticesEnabled": false,
    "UserNoticesEnabled": false
  },
  "ImageProxySettings": {
    "Enable": false
  }
}
EOF
  chmod 600 "$DIR/config.json"

  echo "$URL" >"$DIR/url"
  log "starting on $URL (database $db)"
  launch
  log "answering after $(($(date +%s) - t0)) s; creating the admin"

  local password admin_id token
  password="Aa1-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  TOKEN=""
  # The first user of a server becomes its system admin.
  admin_id="$(api POST /api/v4/users "{\"username\":\"icaadmin\",\"email\":\"icaadmin@example.com\",\"password\":\"$password\"}" | json_field id)"
  [ -n "$admin_id" ] || die "creating the first user gave no id"
  local hdr
  hdr="$(curl -sS -m 30 -D - -o /dev/null -H 'Content-Type: application/json' \
    --data "{\"login_id\":\"icaadmin\",\"password\":\"$password\"}" "$URL/api/v4/users/login")"
  TOKEN="$(printf '%s' "$hdr" | tr -d '\r' | sed -n 's/^[Tt]oken: //p')"
  [ -n "$TOKEN" ] || die "admin login failed: $hdr"
  token="$(api POST "/api/v4/users/$admin_id/tokens" '{"description":"ICA tests"}' | json_field token)"
  [ -n "$token" ] || die "creating the admin's access token failed"
  printf '%s\n' "$password" >"$DIR/admin-password"
  chmod 600 "$DIR/admin-password"

  {
    [ -n "$pgenv" ] && printf '%s\n' "$pgenv"
    echo "export ICA_TEST_MM_DIR='$DIR'"
    echo "export ICA_TEST_MATTERMOST_URL='$URL'"
    echo "export ICA_TEST_MATTERMOST_TOKEN='$token'"
  } >"$ENVFILE"
  chmod 600 "$ENVFILE"
  log "ready after $(($(date +%s) - t0)) s: $URL (admin icaadmin, logs in $DIR/logs)"
  print_env
}

# launch runs the server of $DIR/config.json at $URL and waits until it
# answers.
launch() {
  # From the source tree: the server finds i18n/, templates/ and fonts/
  # relative to its working directory. setsid gives it its own process
  # group, so stop ends everything it started.
  (cd "$SRC" && exec setsid "$BIN" server --config "$DIR/config.json" >>"$DIR/logs/console.log" 2>&1) &
  echo $! >"$DIR/pid"
  local ok=""
  for _ in $(seq 1 600); do
    if curl -fsS -m 2 "$URL/api/v4/system/ping" >/dev/null 2>&1; then ok=1; break; fi
    pid_alive || break
    sleep 0.5
  done
  if [ -z "$ok" ]; then
    tail -n 40 "$DIR/logs/console.log" >&2 || true
    stop_server
    die "Mattermost did not answer /api/v4/system/ping at $URL"
  fi
}

# down stops the server process and keeps everything else, so that up
# brings back the same server: same URL, data, database and tokens.
down() {
  [ -f "$DIR/url" ] || die "no server was started in $DIR; run: $0 start"
  pid_alive || { log "already down"; return; }
  stop_server
  log "down (state kept in $DIR; $0 up starts it again)"
}

up() {
  [ -f "$DIR/url" ] && [ -f "$DIR/config.json" ] || die "no server was started in $DIR; run: $0 start"
  if running; then
    log "already up"
    return
  fi
  URL="$(cat "$DIR/url")"
  port_free "${URL##*:}" || die "port ${URL##*:} is taken by another process; cannot bring $URL back"
  local t0
  t0=$(date +%s)
  build
  launch
  log "up again after $(($(date +%s) - t0)) s: $URL"
}

stop_server() {
  if pid_alive; then
    local pid
    pid="$(cat "$DIR/pid")"
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -KILL -- "-$pid" 2>/dev/null || true
  fi
  rm -f "$DIR/pid"
}

stop() {
  [ -d "$DIR" ] || return 0
  stop_server
  if [ -f "$DIR/own-postgres" ]; then
    ICA_TEST_PG_DIR="$DIR/postgres" "$HERE/postgres-test.sh" stop || true
  elif [ -f "$DIR/database" ] && [ -n "${ICA_TEST_POSTGRES:-}" ]; then
    psql -X -q "$ICA_TEST_POSTGRES" -c "DROP DATABASE IF EXISTS $(cat "$DIR/database") WITH (FORCE)" >/dev/null 2>&1 || true
  fi
  clear_dir
}

case "${1:-}" in
build) build ;;
start) start ;;
stop) stop ;;
env) print_env ;;
status) running ;;
down) down ;;
up) up ;;
*) echo "usage: $0 build|start|stop|env|status|down|up" >&2; exit 2 ;;
esac
