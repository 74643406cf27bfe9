#!/bin/sh
# kvserver-test.sh — the ctest of examples/kvserver.c (test "kvserver"):
#   sh kvserver-test.sh SOCHDB-KVSERVER SOCHDB-KVCHECK KVSERVER-WRK.LUA
# Starts the server on a free loopback port with 4 workers; drives it with
# wrk for 5 s (PUTs of unique keys and GETs: no 5xx, no socket error
# allowed); then sochdb-kvcheck PUTs unique keys from 4 processes over
# keep-alive connections, recording each acknowledged one, and GETs them all
# back; after SIGTERM (the parent must reap every worker) it reads every
# acknowledged key through sochdb_open. The same load and GET check runs on
# the SQLite backend when it is built in. Without wrk the rest still runs and
# the test then reports itself skipped (exit 77) with a message saying so.
set -eu
SERVER=$1 CHECK=$2 LUA=$3
T=$(mktemp -d /tmp/kvserver-test.XXXXXX)
export SOCHDB_SHM_DIR="$T/shm"
mkdir -p "$SOCHDB_SHM_DIR" "$T/db" "$T/sq"
SERVER_PID=

fail() { echo "kvserver-test: FAIL: $*" >&2; exit 1; }

# The daemon of $T/db leaves once idle (SOCHDB_DAEMON_IDLE_MS); wait for it
# before removing the directory it writes into.
cleanup() {
  [ -n "$SERVER_PID" ] && kill -TERM "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
  for _ in $(seq 100); do pgrep -f "sochdbd.*$T/db" >/dev/null || break; sleep 0.1; done
  pkill -TERM -f "sochdbd.*$T/db" 2>/dev/null || true
  rm -rf "$T"
}
trap cleanup EXIT

# start BACKEND DIR: runs the server in the background, sets PORT.
start() {
  rm -f "$T/port"
  "$SERVER" --backend "$1" --dir "$2" --port 0 --workers 4 --port-file "$T/port" 2>"$T/server-$1.log" &
  SERVER_PID=$!
  for _ in $(seq 100); do [ -s "$T/port" ] && break; sleep 0.1; done
  [ -s "$T/port" ] || fail "the $1 server did not start: $(cat "$T/server-$1.log")"
  PORT=$(cat "$T/port")
}

# stop DIR: SIGTERM to the parent; no worker may survive it.
stop() {
  kill -TERM "$SERVER_PID"
  wait "$SERVER_PID" || fail "the server exited with status $?"
  SERVER_PID=
  if pgrep -f "$SERVER --backend .* --dir $1 " >/dev/null; then fail "workers survived SIGTERM"; fi
}

run_wrk() {
  wrk -t2 -c8 -d5s -s "$LUA" "http://127.0.0.1:$PORT" >"$T/wrk.out" 2>&1 || fail "wrk failed: $(cat "$T/wrk.out")"
  cat "$T/wrk.out"
  grep -q "Socket errors" "$T/wrk.out" && fail "wrk saw socket errors"
  grep -q "^status 201 " "$T/wrk.out" || fail "no PUT was acknowledged"
  if grep "^status " "$T/wrk.out" | grep -qv "^status \(200\|201\|404\) "; then fail "unexpected statuses"; fi
}

start sochdb "$T/db"
HAVE_WRK=1
if command -v wrk >/dev/null; then run_wrk; else HAVE_WRK=0; fi
"$CHECK" load "$PORT" "$T/acked" 4 3 || fail "the load failed"
"$CHECK" verify-http "$PORT" "$T/acked" || fail "acknowledged keys are missing over HTTP"
stop "$T/db"
"$CHECK" verify-db "$T/db" "$T/acked" || fail "acknowledged keys are missing in the database"

if ! "$SERVER" --help | grep -q "not built in"; then
  start sqlite "$T/sq"
  "$CHECK" load "$PORT" "$T/acked-sq" 4 2 || fail "the load on SQLite failed"
  "$CHECK" verify-http "$PORT" "$T/acked-sq" || fail "acknowledged keys are missing on SQLite"
  stop "$T/sq"
fi

if [ "$HAVE_WRK" = 0 ]; then
  echo "kvserver-test: SKIPPED the wrk part: wrk not found in PATH (apt-get install wrk); the rest passed"
  exit 77
fi
echo "kvserver-test: PASS"
