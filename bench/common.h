/*
** common.h — what every part of sochdb-bench shares: errors and interruption,
** option parsing, time, latency histograms, keys and values, files, sochdb's
** daemon, worker processes, JSON strings and memory figures from /proc.
**
** sochdb-bench.c (the sochdb workloads) and compare.c (sochdb against LMDB,
** SQLite and RocksDB, through engine.h) are built on it.
*/
#ifndef SOCHDB_BENCH_COMMON_H
#define SOCHDB_BENCH_COMMON_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "sochdb.h"
#include "internal.h"   /* sdb_daemon_pid, sdb_daemon_stop: the daemon of a database */

#include <limits.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>
#include <time.h>

#define MAX_PROCS       200u     /* the region has 256 process slots */
#define MAX_ROWS        16u      /* values in --procs */
#define DEFAULT_BASE    "/var/tmp"
#define DAEMON_STOP_MS  10000u
#define READY_WAIT_S    60.0     /* for the workers to open their handles */
#define DONE_SLACK_S    120.0    /* past the run time, for the last commits */
#define NS_PER_S        1e9
#define L0_TRIGGER      4u       /* sochdbd's default --l0-trigger, which the benchmark's daemons use */
#define SETTLE_POLL_US  100000u  /* how often the settle wait reads the stats */
#define SETTLE_STABLE   3u       /* polls in a row that must find everything settled and unchanged */
#define SETTLE_MAX_S    600.0    /* longest wait for flushing and compaction to settle */
#define DURABLE_POLL_US 2000u    /* how often the wait for the log to catch up reads the stats */

/* ---- errors and interruption ---------------------------------------------- */

/* SIGINT/SIGTERM in the parent: stop waiting, clean up, exit 1. The workers
** keep the default action and die, which the parent sees as a failure. */
extern volatile sig_atomic_t interrupted;

void catch_signals(void);
void default_signals(void);

/* Print "sochdb-bench: ..." to stderr; returns -1. */
int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int fail_errno(const char *what, const char *path);
int db_fail(const char *what, int rc);

/* ---- options ---------------------------------------------------------------- */

/* Process counts of one table (--procs, --read-procs). */
struct proc_list {
  unsigned n[MAX_ROWS];
  unsigned rows;
};

int parse_uint(const char *name, const char *s, unsigned min, unsigned max, unsigned *out);
int parse_seconds(const char *name, const char *s, double *out);
int parse_procs(const char *name, const char *s, struct proc_list *l);

/* ---- time and latency histograms ------------------------------------------ */

uint64_t now_ns(void);
uint64_t cpu_ns(clockid_t clock);      /* CLOCK_PROCESS_CPUTIME_ID, CLOCK_THREAD_CPUTIME_ID */
uint64_t proc_cpu_ns(pid_t pid);       /* user + system time of another process, from /proc (clock ticks) */
void     sleep_us(unsigned us);
double   per_s(uint64_t n, double seconds);

/* Log-linear buckets of nanoseconds: exact below 64 ns, then 32 buckets per
** power of two (within about 3%). Fixed size, so workers keep theirs in
** shared memory and the parent adds them up. */
#define HIST_SUB_BITS 5u
#define HIST_SUB      (1u << HIST_SUB_BITS)
#define HIST_BUCKETS  (60u * HIST_SUB)

struct hist {
  uint64_t count, sum_ns;
  uint64_t b[HIST_BUCKETS];
};

void   hist_add(struct hist *h, uint64_t ns);
/* Read the clock once: add now - since to h and return now, the start of the
** next operation timed back to back. */
uint64_t lap(struct hist *h, uint64_t since);
void   hist_merge(struct hist *into, const struct hist *h);
double hist_quantile_ms(const struct hist *h, double q);
double hist_mean_ms(const struct hist *h);

/* ---- keys and values --------------------------------------------------------- */

/* Key i of process p: the id big-endian (so each process appends), padded. */
static inline uint64_t key_id(unsigned proc, uint64_t i) { return ((uint64_t)proc + 1) << 40 | i; }

uint64_t mix64(uint64_t x);   /* splitmix64's finaliser */

/* One key and its value, as written and as expected back. */
struct kv {
  size_t         klen, vlen;
  size_t         vrandom;     /* the first vrandom bytes of a value are random, the rest 'v' */
  unsigned char *key, *val;
};

int  kv_alloc(struct kv *kv, unsigned key_bytes, unsigned value_bytes, unsigned value_random_pct);
void kv_free(struct kv *kv);
/* Key id with the value of its version-th write. */
void kv_set_version(struct kv *kv, uint64_t id, uint64_t version);
static inline void kv_set(struct kv *kv, uint64_t id) { kv_set_version(kv, id, 0); }

/* ---- files ------------------------------------------------------------------- */

struct fs_info {
  char        name[32];
  int         in_memory;      /* tmpfs or ramfs: fdatasync costs nothing */
};

void fs_type(const char *path, struct fs_info *fs);

/* Microseconds to touch, for the first time, each page of a fresh 64 MiB
** anonymous mapping (0 if it cannot be mapped): what every process pays for
** each page it maps and uses, once. Under some virtual machines (shadow
** paging) it is 10 us or more, and it then weighs on whatever keeps touching
** fresh pages, such as a memtable's new arenas. */
double page_touch_us(void);

/* MB/s of writing 64 MiB, in 2 MiB writes, into a new file's fresh
** page-cache pages, then over the same, now cached, pages (no sync): what
** every engine's writes into new files (SSTables, a growing B-tree, logs)
** cost in memory before any disk. 0 where the file cannot be written. */
struct page_cache_probe {
  double fresh_mbps;
  double cached_mbps;
};

void page_cache_probe(const char *dir, struct page_cache_probe *out);
void print_page_cache_probe(const struct page_cache_probe *p);   /* one header line */

/* Write mb MiB into a new file in dir, in 256 KiB writes with no sync, and
** remove it, so that the page cache's next mb MiB of new pages come from
** memory just freed. On a virtual machine that reports its free memory to
** its host (virtio-balloon free page reporting) a new page-cache page is
** cheap only while it reuses memory freed in the last second or two: a
** fill into new files ran at 3-4 GB/s for its first ~800 MiB and then at
** 0.2-0.3 GB/s (bench/README.md, "Fairness notes": "The phase before, and
** priming"). compare primes before each engine's fills and preload, so
** that no engine runs on what the one before it freed and another on
** memory its host took back. Returns 0, or -1 with errno set (ENOSPC for a
** short write) if the file cannot be made or written: the phase then runs
** unprimed. */
int prime_page_cache(const char *dir, unsigned mb);

/* Microseconds a 4 KiB page of a fresh tmpfs file in dir (where regions go)
** costs: its first write through a shared mapping after MADV_POPULATE_WRITE
** (what a writer of a memtable pays per page), and a pwrite() of it (what
** recovery pays per page of the memtable it rebuilds: src/recovery.c). 0
** where the probe cannot run. Under a hypervisor that shadows page tables
** the first is several times the second. */
struct shm_write_probe {
  double mapped_write_us;
  double pwrite_us;
};

void shm_write_probe(const char *dir, struct shm_write_probe *out);

/* Where sochdb puts the regions of databases under root (/dev/shm or
** $SOCHDB_SHM_DIR), the page size they get there (4096, or 2 MiB on a tmpfs
** with huge pages: shm/pagesize.h), and why, in words. */
struct region_pages {
  char     dir[PATH_MAX];
  uint64_t bytes;
  char     why[192];
};

void region_pages(const char *root, struct region_pages *out);
void print_region_pages(const struct region_pages *p);        /* "sochdb's region: 4 KiB pages (...)" */
void json_region_pages(FILE *f, const struct region_pages *p); /* ,"region_page_bytes":N,"region_pages":"..." */
void rm_rf(const char *dir);

/* ---- sochdb's daemon ---------------------------------------------------------- */

/* Send sig to the daemon serving dir, if any, and wait until it has exited. */
int   stop_daemon(const char *dir, int sig);
/* sochdb_stats_get, its error reported. */
int   stats_now(sochdb *db, sochdb_stats *st);
/* Poll the stats until SETTLE_STABLE polls in a row find every rotated-out
** memtable flushed, level 0 below the trigger, no compaction debt and no file
** changed; *st gets the last stats, *seconds the wait until the first of
** those polls (the confirming polls after it are not counted). */
int   sochdb_wait_settled(sochdb *db, sochdb_stats *st, double *seconds);
/* Poll the stats every DURABLE_POLL_US until every commit up to seq is
** durable; *seconds gets the wait. */
int   sochdb_wait_durable(sochdb *db, uint64_t seq, double *seconds);

/* ---- worker processes ----------------------------------------------------------- */

struct kids {
  pid_t   *pid;              /* 0 once reaped */
  unsigned n;
  int      failed;
};

/* Fork n children; child i runs _exit(child(i, ctx)) with the default
** signal actions. */
int kids_spawn(struct kids *k, unsigned n, int (*child)(unsigned idx, void *ctx), void *ctx);
/* Reap whichever children exited; -1 if one failed. */
int kids_poll(struct kids *k);
/* Wait for every child (killing them first if kill_them); -1 if one failed. */
int kids_finish(struct kids *k, int kill_them);
/* Until *counter reaches n, looking every 200 us (every poll_us); -1 if a
** child failed or the wait took too long. */
int wait_count(atomic_uint *counter, unsigned n, struct kids *k, double max_s, const char *what);
int wait_count_every(atomic_uint *counter, unsigned n, struct kids *k, double max_s, const char *what,
                     unsigned poll_us);
/* Sleep until now_ns() reaches t, looking every 50 ms for a failed worker
** (-1, with a message): the parent of a timed phase wakes 20 times a second
** instead of sharing a core with its workers 1000 times a second. */
int wait_until(uint64_t t, struct kids *k);

/* ---- output --------------------------------------------------------------------- */

void json_str(FILE *f, const char *s);

/* ---- memory ---------------------------------------------------------------------- */

struct mem_usage {
  uint64_t rss_kib;          /* VmRSS: every resident page mapped, shared ones included */
  uint64_t private_kib;      /* Private_Clean + Private_Dirty of the whole process (smaps_rollup) */
  uint64_t excluded_kib;     /* ... of which in mappings of the excluded files */
};

/* The figures of process pid (0: this one). A mapping whose file's path
** starts with one of exclude[0..n) (the database's files, sochdb's region)
** counts in excluded_kib: a page of a shared file that only this process has
** touched so far is "private" to the kernel, yet it is the database's, not
** the client's. */
int mem_usage(pid_t pid, const char *const *exclude, unsigned n, struct mem_usage *out);

#endif /* SOCHDB_BENCH_COMMON_H */
