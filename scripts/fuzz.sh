#!/usr/bin/env bash
# fuzz.sh — build the libFuzzer targets (fuzz/) with clang and run each one.
#
#   bash scripts/fuzz.sh [SECONDS]     SECONDS per target (default 60)
#
# Builds in build-fuzz/ (CC=clang, -DSOCHDB_FUZZ=ON, no tests), writes a seed
# corpus of valid files with the library's own writers, then runs fuzz_sst,
# fuzz_wal, fuzz_manifest, fuzz_txn (the key-value API against a model of
# snapshot isolation) and fuzz_table (the columnar tables against a model of
# their rows), the last two on databases served by the tree's own sochdbd,
# for SECONDS each. The corpus each run grows is
# kept in build-fuzz/corpus/<target> (later runs start from it); a crashing
# input is saved in build-fuzz/crashes/<target>/ and makes the script exit 1.
set -u
secs=${1:-60}
case $secs in ''|*[!0-9]*) echo "usage: $0 [SECONDS per target]" >&2; exit 2 ;; esac

root=$(cd "$(dirname "$0")/.." && pwd)
build=$root/build-fuzz
jobs=$(nproc 2>/dev/null || echo 2)

cmake -S "$root" -B "$build" -DCMAKE_C_COMPILER=clang -DSOCHDB_FUZZ=ON -DSOCHDB_BUILD_TESTS=OFF \
      -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null || exit 1
cmake --build "$build" -j"$jobs" --target fuzz_sst fuzz_wal fuzz_manifest fuzz_txn fuzz_table sochdbd sochdb_fuzz_corpus \
  || exit 1
# fuzz_txn's and fuzz_table's databases are served by this tree's daemon,
# its compactions unthrottled: their 1 MiB memtables flush many times a
# second, and at the default 64 MiB/s of compaction reads level 0 grew to
# hundreds of files in a 10-minute fuzz_table run (each read searching them
# all: 24 inputs a second instead of hundreds).
printf '#!/bin/sh\nexec "%s" --compaction-rate-mb 0 "$@"\n' "$build/sochdbd" >"$build/sochdbd-fuzz"
chmod +x "$build/sochdbd-fuzz"
export SOCHDB_DAEMON=$build/sochdbd-fuzz
export SOCHDB_FUZZ_TXN_DIR=$build/txn-db   # and they live here: a crashed run's is taken up by the next
export SOCHDB_FUZZ_TABLE_DIR=$build/table-db

seeds=$build/seeds
rm -rf "$seeds"
"$build/sochdb_fuzz_corpus" "$seeds" || exit 1

# Each target is one process on one core: as many run at once as there are
# cores, so a 2-core CI machine fuzzes the five in three rounds, not five.
run_target() {
  local t=$1 corpus=$build/corpus/$1 crashes=$build/crashes/$1
  mkdir -p "$corpus" "$crashes"
  "$build/fuzz_$t" -max_total_time="$secs" -print_final_stats=1 -artifact_prefix="$crashes/" \
      -rss_limit_mb=4096 -timeout=10 "$corpus" "$seeds/$t" >"$build/fuzz_$t.log" 2>&1
  echo $? >"$build/fuzz_$t.rc"
}
targets=(sst wal manifest txn table)
running=0
for t in "${targets[@]}"; do
  if [ $running -ge "$jobs" ]; then
    wait -n
    running=$((running - 1))
  fi
  run_target "$t" &
  running=$((running + 1))
done
wait
failed=0
# A one-line account of each failure for the end of CI's output (quickstart.sh
# prints it beside the failed step): what killed the target and, for a small
# input, the input itself (libFuzzer's Base64 line) to reproduce it from.
summary=$build/fuzz-failures.txt
rm -f "$summary"
for t in "${targets[@]}"; do
  log=$build/fuzz_$t.log
  rc=$(cat "$build/fuzz_$t.rc" 2>/dev/null || echo 1)
  echo "== fuzz_$t: $secs s"
  grep -E '^stat::number_of_executed_units|^stat::peak_rss_mb|^#[0-9]+.*DONE' "$log" | sed 's/^/   /'
  # A timeout or out-of-memory input that runs in time and memory when run
  # again alone was a stall of the machine (CI's are shared), not of the reader.
  # Only this run's, and only when that is what stopped it: an older saved
  # input must not excuse a crash or a model mismatch (fuzz_txn's and fuzz_table's abort).
  stalled=
  if grep -q -E '^==[0-9]+== ERROR: libFuzzer: (timeout|out-of-memory)' "$log"; then
    stalled=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
  fi
  if [ "$rc" -ne 0 ] && [ -n "$stalled" ] && [ -f "$stalled" ] &&
     ! grep -q -E 'ERROR: (Address|Undefined|Leak)Sanitizer|runtime error' "$log" &&
     "$build/fuzz_$t" -timeout=10 -rss_limit_mb=4096 "$stalled" >"$log.again" 2>&1; then
    echo "   $(basename "$stalled") stopped the run, but ran in time and memory alone: a stall, not counted"
    rc=0
  fi
  if [ "$rc" -ne 0 ]; then
    echo "!! fuzz_$t FAILED (exit $rc); see $log and $build/crashes/$t/" >&2
    grep -E -m3 '^fuzz_(txn|table):|ERROR:|runtime error|SUMMARY' "$log" | sed 's/^/   /' >&2
    { echo "fuzz_$t exit $rc: $(grep -E -m1 '^fuzz_(txn|table):|ERROR:|runtime error|SUMMARY|Timeout|out-of-memory|leak' "$log")"
      grep -m1 '^Base64:' "$log" | cut -c1-3000; } >>"$summary"
    failed=1
  fi
done
if [ $failed -ne 0 ]; then
  echo "fuzz: FAILED" >&2
  exit 1
fi
echo "fuzz: OK (no crash in $secs s per target)"
