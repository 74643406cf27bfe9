#!/usr/bin/env bash
# run-tests.sh — install and test the Python and Node.js bindings against a
# build of libsochdb.so and sochdbd.
#
#   bash bindings/run-tests.sh [BUILD_DIR] [--only python|node]
#
# BUILD_DIR (default ./build) must hold libsochdb.so and sochdbd, e.g. from
#   cmake -S . -B build && cmake --build build --target sochdb_shared sochdbd
#
# Python: a venv in BUILD_DIR/bindings-venv (with the system site-packages, for
#   pytest and setuptools), `pip install --no-build-isolation --no-index` of
#   bindings/python into it (offline: nothing is downloaded), then pytest and
#   examples/python_fork_workers.py. pytest, pip and setuptools come from the
#   interpreter ($PYTHON, python3 or /usr/bin/python3: the first that has all
#   three); if none has them and we are root, Debian's python3-pytest,
#   python3-pip and python3-setuptools are installed.
# Node.js: `npm ci` in bindings/node (reaches the npm registry unless
#   node_modules is already up to date with package-lock.json), then
#   `node --test`.
# The region files go to a temporary SOCHDB_SHM_DIR, removed at the end.
# Ends with "bindings: N passed, N failed"; exits non-zero on any failure.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
build=""
only=""
while (($#)); do
  case "$1" in
    --only) only=${2:-}; shift 2 ;;
    --only=*) only=${1#--only=}; shift ;;
    -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
    *) if [[ -z $build ]]; then build=$1; shift; else echo "run-tests.sh: unexpected argument $1" >&2; exit 2; fi ;;
  esac
done
build=${build:-$root/build}
if [[ $only && $only != python && $only != node ]]; then
  echo "run-tests.sh: --only takes python or node" >&2; exit 2
fi
[[ -d $build ]] || { echo "run-tests.sh: no build directory $build" >&2; exit 2; }
build=$(cd "$build" && pwd)
for f in libsochdb.so sochdbd; do
  if [[ ! -e $build/$f ]]; then
    echo "run-tests.sh: $build/$f is missing; build it first:" >&2
    echo "  cmake -S $root -B $build && cmake --build $build --target sochdb_shared sochdbd" >&2
    exit 2
  fi
done

export SOCHDB_LIBRARY=$build/libsochdb.so
export SOCHDB_DAEMON=$build/sochdbd
export SOCHDB_DAEMON_IDLE_MS=${SOCHDB_DAEMON_IDLE_MS:-1500}
shm=$(mktemp -d "${TMPDIR:-/tmp}/sochdb-bindings-shm.XXXXXX")
export SOCHDB_SHM_DIR=$shm
logs=$(mktemp -d "${TMPDIR:-/tmp}/sochdb-bindings-logs.XXXXXX")
trap 'rm -rf "$shm" "$logs"' EXIT

passed=0
failed=0
started=$SECONDS
say() { printf '== %s\n' "$*"; }

# ------------------------------------------------------------------ Python

# What the venv borrows from the interpreter's site-packages: pytest to run the
# tests, pip and setuptools to install the package offline.
has_pytest() { "$1" -c 'import setuptools, pip, pytest' >/dev/null 2>&1; }
DEBIAN_PY_PKGS=(python3-pytest python3-pip python3-setuptools)

run_python() {
  local py="" cand
  for cand in ${PYTHON:-} python3 /usr/bin/python3; do
    if command -v "$cand" >/dev/null 2>&1 && has_pytest "$cand"; then py=$(command -v "$cand"); break; fi
  done
  if [[ -z $py ]]; then
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null 2>&1; then
      say "installing ${DEBIAN_PY_PKGS[*]} (Debian)"
      DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${DEBIAN_PY_PKGS[@]}" >"$logs/apt" 2>&1 ||
        { apt-get update >"$logs/apt" 2>&1 &&
          DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${DEBIAN_PY_PKGS[@]}" >>"$logs/apt" 2>&1; } ||
        { cat "$logs/apt" >&2; }
    fi
    has_pytest /usr/bin/python3 && py=/usr/bin/python3
  fi
  if [[ -z $py ]]; then
    echo "run-tests.sh: no python3 with pytest, pip and setuptools (apt-get install ${DEBIAN_PY_PKGS[*]})" >&2
    failed=$((failed + 1)); return
  fi

  local venv=$build/bindings-venv
  if [[ ! -x $venv/bin/python || $(cat "$venv/.sochdb-python" 2>/dev/null) != "$py" ]]; then
    rm -rf "$venv"
    "$py" -m venv --system-site-packages --without-pip "$venv" || { failed=$((failed + 1)); return; }
    echo "$py" >"$venv/.sochdb-python"
  fi
  say "pip install bindings/python into $venv (python: $py)"
  # The venv sees the system's pip and setuptools; --no-build-isolation and
  # --no-index: nothing is fetched. The in-tree build leaves bindings/python/build
  # and *.egg-info behind (git-ignored).
  if ! "$venv/bin/python" -m pip install --quiet --no-build-isolation --no-index --no-deps --force-reinstall \
        --disable-pip-version-check "$root/bindings/python" >"$logs/pip" 2>&1; then
    cat "$logs/pip" >&2
    failed=$((failed + 1)); return
  fi

  say "pytest bindings/python/tests"
  local t0=$SECONDS
  # From the tests' directory's parent, so that `import sochdb` is the installed package.
  (cd "$root/bindings/python" && "$venv/bin/python" -m pytest -q -p no:cacheprovider tests) 2>&1 | tee "$logs/pytest"
  # pytest's last line: "== 48 passed, 1 failed, 2 errors in 1.6s ==" (counts absent when 0).
  local summary p=0 f=0
  summary=$(grep -E '[0-9]+ (passed|failed|errors?)' "$logs/pytest" | tail -1)
  [[ $summary =~ ([0-9]+)\ passed ]] && p=${BASH_REMATCH[1]}
  [[ $summary =~ ([0-9]+)\ failed ]] && f=${BASH_REMATCH[1]}
  [[ $summary =~ ([0-9]+)\ errors? ]] && f=$((f + BASH_REMATCH[1]))
  [[ -z $summary ]] && f=1   # pytest did not get as far as a summary
  passed=$((passed + p))
  failed=$((failed + f))
  say "pytest: $p passed, $f failed in $((SECONDS - t0)) s"

  say "examples/python_fork_workers.py"
  if (cd "$root" && "$venv/bin/python" examples/python_fork_workers.py --workers 4 --requests 200) | tail -1; then
    passed=$((passed + 1))
  else
    echo "examples/python_fork_workers.py FAILED" >&2
    failed=$((failed + 1))
  fi
}

# ------------------------------------------------------------------ Node.js

run_node() {
  if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "run-tests.sh: node and npm are needed for the Node.js bindings" >&2
    failed=$((failed + 1)); return
  fi
  local dir=$root/bindings/node
  # npm ci reinstalls from package-lock.json; skipped when node_modules already
  # matches it (npm records what it installed in node_modules/.package-lock.json).
  if [[ ! -f $dir/node_modules/.package-lock.json || $dir/package-lock.json -nt $dir/node_modules/.package-lock.json ]] ||
     ! (cd "$dir" && node -e 'require("koffi")' >/dev/null 2>&1); then
    say "npm ci in bindings/node"
    if ! (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error) >"$logs/npm" 2>&1; then
      cat "$logs/npm" >&2
      failed=$((failed + 1)); return
    fi
  else
    say "bindings/node/node_modules is up to date with package-lock.json"
  fi

  say "node --test bindings/node/test"
  local t0=$SECONDS
  (cd "$dir" && node --test test/*.test.js) >"$logs/node" 2>&1
  local rc=$?
  grep -E '^(not ok|# )' "$logs/node" | grep -vE '^# Subtest' || true
  local p f
  p=$(grep -E '^# pass [0-9]+' "$logs/node" | grep -Eo '[0-9]+' | tail -1)
  f=$(grep -E '^# fail [0-9]+' "$logs/node" | grep -Eo '[0-9]+' | tail -1)
  if ((rc != 0)) && [[ ${f:-0} == 0 ]]; then
    cat "$logs/node" >&2
    f=1
  elif [[ ${f:-0} != 0 ]]; then
    grep -A30 '^not ok' "$logs/node" >&2
  fi
  passed=$((passed + ${p:-0}))
  failed=$((failed + ${f:-0}))
  say "node --test: ${p:-0} passed, ${f:-0} failed in $((SECONDS - t0)) s"
}

say "library $SOCHDB_LIBRARY, daemon $SOCHDB_DAEMON"
[[ $only == node ]] || run_python
[[ $only == python ]] || run_node

say "done in $((SECONDS - started)) s"
echo "bindings: $passed passed, $failed failed"
((failed == 0))
