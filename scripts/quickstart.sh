#!/usr/bin/env bash
# quickstart.sh — from a fresh Debian 12 to a built, tested sochdb.
#
#   scripts/quickstart.sh demo    install deps, Release build, run the demo
#   scripts/quickstart.sh build   install deps, plain build in build/
#   scripts/quickstart.sh test    install deps, then build and test three ways:
#                                   build/       RelWithDebInfo, all tests,
#                                                and the Python and Node.js
#                                                bindings' tests
#                                   build-asan/  ASan+UBSan, all tests
#                                   build-tsan/  TSan, tests labelled inproc
#                                 then a short fuzz run of the file readers
#                                 (scripts/fuzz.sh, SOCHDB_FUZZ_SECONDS per
#                                 target, default 20; 0 skips it) and
#                                 stress/smoke.sh if present; prints
#                                 "N passed, N failed" and fails if N failed > 0
#   scripts/quickstart.sh test-huge  the plain build's tests with every region
#                                 in 2 MiB pages: a tmpfs mounted
#                                 huge=within_size on build/shm, where the
#                                 tests put their regions (needs root; not
#                                 part of `test`, which CI runs)
#
# Environment: SOCHDB_CMAKE_ARGS  extra arguments for every cmake configure
#              (e.g. "-DSOCHDB_WERROR=ON").
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"

JOBS=$(nproc 2>/dev/null || echo 2)
PACKAGES=(build-essential cmake pkg-config liburcu-dev libck-dev liblz4-dev
          libxxhash-dev libcriterion-dev clang libclang-rt-14-dev procps
          python3 python3-pytest python3-pip python3-setuptools python3-venv
          wrk liblmdb-dev libsqlite3-dev librocksdb-dev)
# Node.js and npm may come from another source (NodeSource's nodejs bundles
# npm and conflicts with Debian's npm package): installed from Debian only
# when the command is missing.
NODE_PACKAGES=(nodejs:node npm:npm)
read -r -a EXTRA_CMAKE_ARGS <<< "${SOCHDB_CMAKE_ARGS:-}"

usage() {
  sed -n '2,/^$/{/^#/s/^# \{0,1\}//p}' "${BASH_SOURCE[0]}"
}

# Each step says when it began (seconds since the script started), so a
# slow CI run shows which step took the time.
log() { printf '\n==> [%4ds] %s\n' "$SECONDS" "$*"; }

# ------------------------------------------------------------------ packages

install_packages() {
  local missing=() p
  for p in "${PACKAGES[@]}"; do
    # dpkg-query fails for a package it has never heard of: that is "missing".
    if [[ $(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true) != "install ok installed" ]]; then
      missing+=("$p")
    fi
  done
  for p in "${NODE_PACKAGES[@]}"; do
    command -v "${p#*:}" >/dev/null || missing+=("${p%%:*}")
  done
  if ((${#missing[@]} == 0)); then
    log "build dependencies already installed"
    return 0
  fi
  log "installing: ${missing[*]}"
  local sudo=()
  if ((EUID != 0)); then
    command -v sudo >/dev/null || { echo "need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
    sudo=(sudo)
  fi
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y --no-install-recommends "${missing[@]}"
}

# ------------------------------------------------------------------ building

# configure_and_build DIR [cmake args...]: returns non-zero instead of exiting,
# so "test" can carry on with the other configurations. With BUILD_TARGET
# set, only that target is built (the TSan tree: tests-inproc, the suites it
# runs and what they run).
configure_and_build() {
  local dir=$1
  shift
  log "configure $dir $*"
  cmake -S "$REPO" -B "$REPO/$dir" "$@" "${EXTRA_CMAKE_ARGS[@]}" || return 1
  log "build $dir ${BUILD_TARGET:-}"
  cmake --build "$REPO/$dir" -j"$JOBS" ${BUILD_TARGET:+--target "$BUILD_TARGET"} || return 1
}

# ------------------------------------------------------------------ testing

TOTAL_PASSED=0
TOTAL_FAILED=0
FAILED_STEPS=()
CTEST_WRAP=()   # a command prefix for ctest (see the TSan run)

# run_ctest NAME DIR [ctest args...]: runs ctest, adds its counts to the
# totals. ctest's last summary line is either
#   "100% tests passed, 0 tests failed out of 7"   or
#   "71% tests passed, 2 tests failed out of 7";
# if there is none (ctest crashed, or no tests matched), it counts as one
# failure unless ctest said "No tests were found".
# The suites wait more than they compute (fsyncs, daemons starting and
# leaving, children killed): on 2 cores the plain run kept the CPUs 48% busy
# at -j2 and took 86 s, at -j4 48 s (ASan+UBSan: 101 s and 62 s). TSan keeps
# them busy (103 s at -j2, 94 and 107 s at -j4): its run keeps -j$JOBS. Each
# Criterion suite runs two tests at a time itself.
CTEST_JOBS=$((2 * JOBS))

run_ctest() {
  local name=$1 dir=$2
  shift 2
  local out rc=0 line failed total
  out=$(mktemp)
  log "ctest $name $*"
  "${CTEST_WRAP[@]}" ctest --test-dir "$REPO/$dir" --output-on-failure -j"$CTEST_JOBS" "$@" 2>&1 | tee "$out" || rc=$?
  line=$(grep -E '[0-9]+ tests? failed out of [0-9]+' "$out" | tail -n 1 || true)
  if [[ $line =~ ([0-9]+)\ tests?\ failed\ out\ of\ ([0-9]+) ]]; then
    failed=${BASH_REMATCH[1]}
    total=${BASH_REMATCH[2]}
    TOTAL_PASSED=$((TOTAL_PASSED + total - failed))
    TOTAL_FAILED=$((TOTAL_FAILED + failed))
    if ((failed > 0 || rc != 0)); then
      FAILED_STEPS+=("$name: $failed of $total tests failed")
      ((failed > 0)) || TOTAL_FAILED=$((TOTAL_FAILED + 1))
    fi
  elif grep -q 'No tests were found' "$out" && ((rc == 0)); then
    echo "($name: no tests)"
  else
    FAILED_STEPS+=("$name: ctest failed (exit $rc) without a summary")
    TOTAL_FAILED=$((TOTAL_FAILED + 1))
  fi
  rm -f "$out"
}

# Sanitizer reports go to files (log_path) rather than to the test's output:
# the tests start sochdbd daemons, whose output lands in a log inside a test
# directory that is deleted afterwards, so a report from a daemon would
# otherwise never be seen. sanitizer_log_base DIR prints the log_path prefix
# (and empties its folder); check_sanitizer_logs NAME DIR counts any report
# as a failure and shows it.
sanitizer_log_base() {
  local logs="$REPO/$1/sanitizer-logs"
  rm -rf "$logs"
  mkdir -p "$logs"
  echo "$logs/report"
}

check_sanitizer_logs() {
  local name=$1 logs="$REPO/$2/sanitizer-logs" f n=0
  for f in "$logs"/report*; do
    [[ -e $f ]] || continue
    # LeakSanitizer's exit-time check of a process that was SIGKILLed while
    # it ran (the tests kill daemons that may be leaving): its tracer cannot
    # read the dying threads and says only this. No finding, and no check:
    # shown, not counted.
    if ! grep -qv 'Unable to get registers from thread' "$f"; then
      echo "---- $name: a leak check cut short by a kill (not a report): $f: $(head -c 200 "$f")"
      continue
    fi
    n=$((n + 1))
    echo "---- $name sanitizer report: $f"
    head -n 60 "$f"
  done
  if ((n > 0)); then
    FAILED_STEPS+=("$name: $n sanitizer report(s) from test or daemon processes")
    TOTAL_FAILED=$((TOTAL_FAILED + 1))
  fi
}

# A configuration that does not build counts as one failure: its tests
# could not even run.
build_failed() {
  FAILED_STEPS+=("$1: build failed")
  TOTAL_FAILED=$((TOTAL_FAILED + 1))
}

cmd_test() {
  install_packages

  # Criterion leaks 48 bytes in its runner for a test's own .timeout, which
  # fails the ASan run with every test passing: a suite's timeout only.
  if grep -n '^Test(.*\.timeout' "$REPO"/tests/*.c; then
    FAILED_STEPS+=("tests: a test with its own .timeout (set the suite's)")
    TOTAL_FAILED=$((TOTAL_FAILED + 1))
  fi

  # 1. plain
  if configure_and_build build -DCMAKE_BUILD_TYPE=RelWithDebInfo; then
    run_ctest plain build
  else
    build_failed plain
  fi

  # 1b. The Python and Node.js bindings, against the plain build.
  if [[ -x $REPO/build/sochdbd ]]; then
    log "bindings/run-tests.sh build"
    if bash "$REPO/bindings/run-tests.sh" "$REPO/build"; then
      TOTAL_PASSED=$((TOTAL_PASSED + 1))
    else
      FAILED_STEPS+=("bindings/run-tests.sh failed")
      TOTAL_FAILED=$((TOTAL_FAILED + 1))
    fi
  fi

  # 2. ASan + UBSan. Leak checking on; a UBSan report stops the process so the
  #    test fails instead of printing and going on.
  if configure_and_build build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSOCHDB_SANITIZE=address; then
    local asan_log
    asan_log=$(sanitizer_log_base build-asan)
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:log_path=$asan_log \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:log_path=$asan_log \
      run_ctest asan build-asan
    check_sanitizer_logs asan build-asan
  else
    build_failed asan
  fi

  # 3. TSan, in-process tests only: TSan cannot follow memory shared across
  #    processes, so it would only report noise on the multiproc ones.
  #    setarch -R turns address randomisation off for the run: on kernels with
  #    a high vm.mmap_rnd_bits, TSan (gcc 12) dies with "unexpected memory
  #    mapping" otherwise.
  if BUILD_TARGET=tests-inproc configure_and_build build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSOCHDB_SANITIZE=thread; then
    CTEST_WRAP=()
    if command -v setarch >/dev/null && setarch "$(uname -m)" -R true 2>/dev/null; then
      CTEST_WRAP=(setarch "$(uname -m)" -R)
    fi
    local tsan_log
    tsan_log=$(sanitizer_log_base build-tsan)
    CTEST_JOBS=$JOBS TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1:log_path=$tsan_log \
      run_ctest tsan build-tsan -L inproc
    check_sanitizer_logs tsan build-tsan
    CTEST_WRAP=()
  else
    build_failed tsan
  fi

  # 4. A short libFuzzer run of the SSTable, WAL and MANIFEST readers.
  local fuzz_secs=${SOCHDB_FUZZ_SECONDS:-20}
  if ((fuzz_secs > 0)); then
    log "scripts/fuzz.sh $fuzz_secs"
    if bash "$REPO/scripts/fuzz.sh" "$fuzz_secs"; then
      TOTAL_PASSED=$((TOTAL_PASSED + 1))
    else
      FAILED_STEPS+=("scripts/fuzz.sh found a crash or did not build $(cat "$REPO/build-fuzz/fuzz-failures.txt" 2>/dev/null)")
      TOTAL_FAILED=$((TOTAL_FAILED + 1))
    fi
  fi

  # 5. Multi-process stress smoke test, against the plain build; one test.
  if [[ -f $REPO/stress/smoke.sh ]]; then
    log "stress/smoke.sh"
    if SOCHDB_BUILD_DIR="$REPO/build" PATH="$REPO/build:$PATH" bash "$REPO/stress/smoke.sh"; then
      TOTAL_PASSED=$((TOTAL_PASSED + 1))
    else
      FAILED_STEPS+=("stress/smoke.sh failed")
      TOTAL_FAILED=$((TOTAL_FAILED + 1))
    fi
  fi

  report_totals
}

report_totals() {
  echo
  local s
  for s in "${FAILED_STEPS[@]}"; do
    echo "FAILED: $s"
  done
  echo "all steps took ${SECONDS}s"
  echo "$TOTAL_PASSED passed, $TOTAL_FAILED failed"
  ((TOTAL_FAILED == 0))
}

# The regions of the tests live in build/shm (CMakeLists.txt); a tmpfs that
# gives 2 MiB pages mounted there runs the whole suite on them (README,
# "Huge pages"). Unmounted again whatever the outcome.
cmd_test_huge() {
  install_packages
  configure_and_build build -DCMAKE_BUILD_TYPE=RelWithDebInfo || { build_failed plain; report_totals; return; }
  local shm=$REPO/build/shm
  mkdir -p "$shm"
  if ! mount -t tmpfs -o huge=within_size,mode=1777 tmpfs "$shm"; then
    echo "cannot mount a tmpfs on $shm (root is needed)" >&2
    return 1
  fi
  trap "umount -l '$shm'" EXIT   # expanded now: the local is gone by exit
  log "regions of the tests in $shm: $(grep " $shm " /proc/mounts)"
  run_ctest huge-pages build
  report_totals
}

cmd_build() {
  install_packages
  configure_and_build build -DCMAKE_BUILD_TYPE=RelWithDebInfo
}

cmd_demo() {
  install_packages
  configure_and_build build -DCMAKE_BUILD_TYPE=Release
  if [[ ! -x $REPO/build/sochdb-demo ]]; then
    echo "build/sochdb-demo was not built (examples/demo.c missing?)" >&2
    exit 1
  fi
  # The demo makes its database in a new /tmp/sochdb-demo-XXXXXX and keeps
  # it, saying how to look inside and how to remove it (sochdb destroy).
  # build/ on PATH lets the library find sochdbd even if its own lookup next
  # to the executable fails.
  log "running build/sochdb-demo"
  PATH="$REPO/build:$PATH" "$REPO/build/sochdb-demo"
}

case "${1:-}" in
  demo)  cmd_demo ;;
  build) cmd_build ;;
  test)  cmd_test ;;
  test-huge) cmd_test_huge ;;
  -h|--help|help) usage ;;
  *) usage >&2; exit 2 ;;
esac
