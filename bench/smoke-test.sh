#!/bin/sh
# bench/smoke-test.sh BENCH — ctest's bench_smoke: both modes of sochdb-bench
# at tiny sizes (a few seconds each), so that the benchmark the README quotes
# keeps working. The benchmark fails by itself on a wrong value read or a
# failed operation; here its JSON must also hold a positive figure for every
# row sochdb ran, the probes of the header, and the region's page size.
set -eu
bench=$1
work=$(mktemp -d "${TMPDIR:-/tmp}/sochdb-bench-smoke.XXXXXX")
trap 'rm -rf "$work"' EXIT

# a small prime (the default 1.5 GiB before each fill would take a minute here);
# two rounds, so that the median and the engines' turns are exercised
"$bench" compare --dir "$work" --keys 20000 --seconds 0.2 --sync-procs 1,2 --read-procs 1,2 --procs 2 \
  --prime-mb 8 --rounds 2 --json "$work/compare.json" --no-chart
"$bench" --dir "$work" --seconds 0.2 --procs 1,2 --read-procs 1 --read-keys 20000 --recovery-mb 1 \
  --fsync-seconds 0.1 --memory-mb 4 --amp-memtables 2 --hot-keys 2000 --hot-rounds 2 --json "$work/bench.json" all

python3 - "$work/compare.json" "$work/bench.json" <<'PY'
import json, sys
compare, bench = (json.load(open(p)) for p in sys.argv[1:3])
problems = []
def need(ok, what):
    if not ok:
        problems.append(what)
labels = [row["label"] for row in compare["rows"]]
for want in ("fill_seq", "fill_batch", "read_rand x1", "read_rand x2", "read_seq", "sync_commit x2"):
    need(want in labels, "compare has no row " + want)
need(compare.get("rounds") == 2, "rounds: %r" % compare.get("rounds"))
for row in compare["rows"]:
    s = row["results"].get("sochdb", {})
    need(s.get("ran") and not s.get("failed") and s.get("ops_per_s", 0) > 0, "sochdb in " + row["label"] + ": " + repr(s))
    rounds = s.get("round_ops_per_s", [])
    # the median of two rounds is the slower one
    need(len(rounds) == 2 and min(rounds) > 0 and abs(s.get("ops_per_s", 0) - min(rounds)) <= 0.1,
         "sochdb's rounds in " + row["label"] + ": %r" % rounds)
    need(s.get("write_stall_s", -1) >= 0, "sochdb's write stalls in " + row["label"] + ": %r" % s.get("write_stall_s"))
    need("sochdb_over_best_other" not in row or len(row.get("round_ratios", [])) == 2,
         "round ratios in " + row["label"] + ": %r" % row.get("round_ratios"))
need(compare["page_touch_us"] > 0, "no page-touch probe")
need(compare.get("prime_mb") == 8 and compare.get("primes", 0) > 0 and compare.get("prime_failures") == 0,
     "priming: %r" % {k: compare.get(k) for k in ("prime_mb", "primes", "prime_failures")})
need(compare["page_cache_fresh_mbps"] > 0 and compare["page_cache_cached_mbps"] > 0, "no page-cache probe")
for doc in (compare, bench):
    need(doc["region_page_bytes"] in (4096, 2 << 20) and doc["region_pages"], "region pages: %r" % doc.get("region_pages"))
for key in ("sync_commit", "fill_async", "recovery", "read_sst", "amplification", "memory", "read_hot"):
    need(bench.get(key), "sochdb-bench all has no " + key)
hot = bench.get("read_hot", {})
need(hot.get("reads", 0) > 0 and 0 < hot.get("best_ns", 0) <= hot.get("median_ns", 0), "read_hot: %r" % hot)
if problems:
    sys.exit("bench smoke test:\n  " + "\n  ".join(problems))
print("bench smoke test: %d compare rows, sochdb-bench all: ok" % len(labels))
PY
