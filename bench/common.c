/*
** common.c — the helpers every part of sochdb-bench shares (see common.h).
*/
#include "common.h"
#include "pagesize.h"
#include "region.h"   /* shm_region_path: where the library puts a database's region */

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- errors and interruption ------------------------------------------------ */

volatile sig_atomic_t interrupted;

static void on_signal(int sig) { (void)sig; interrupted = 1; }

void catch_signals(void)
{
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
}

void default_signals(void)
{
  signal(SIGINT, SIG_DFL);
  signal(SIGTERM, SIG_DFL);
}

int fail(const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  fputs("sochdb-bench: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  return -1;
}

int fail_errno(const char *what, const char *path)
{
  return fail("%s %s: %s", what, path, strerror(errno));
}

int db_fail(const char *what, int rc)
{
  return fail("%s: %s (%s)", what, sochdb_strerror(rc), sochdb_last_error());
}

/* ---- options ------------------------------------------------------------------ */

int parse_uint(const char *name, const char *s, unsigned min, unsigned max, unsigned *out)
{
  char *end;
  errno = 0;
  unsigned long v = strtoul(s, &end, 10);
  if (!*s || *end || *s == '-' || errno || v < min || v > max)
    return fail("%s takes a number from %u to %u, not '%s'", name, min, max, s);
  *out = (unsigned)v;
  return 0;
}

int parse_seconds(const char *name, const char *s, double *out)
{
  char *end;
  double v = strtod(s, &end);
  if (!*s || *end || !(v > 0 && v <= 3600))
    return fail("%s takes seconds, more than 0 and at most 3600, not '%s'", name, s);
  *out = v;
  return 0;
}

int parse_procs(const char *name, const char *s, struct proc_list *l)
{
  char copy[256];
  snprintf(copy, sizeof copy, "%s", s);
  l->rows = 0;
  for (char *save, *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
    if (l->rows == MAX_ROWS)
      return fail("%s takes at most %u values", name, MAX_ROWS);
    if (parse_uint(name, tok, 1, MAX_PROCS, &l->n[l->rows++]) != 0)
      return -1;
  }
  return l->rows ? 0 : fail("%s needs at least one process count", name);
}

/* ---- time and latency histograms ----------------------------------------- */

uint64_t now_ns(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void sleep_us(unsigned us)
{
  struct timespec ts = { us / 1000000u, (long)(us % 1000000u) * 1000L };
  nanosleep(&ts, NULL);
}

double per_s(uint64_t n, double seconds) { return seconds > 0 ? (double)n / seconds : 0; }

static unsigned hist_index(uint64_t ns)
{
  if (ns < 2 * HIST_SUB)
    return (unsigned)ns;
  unsigned e = 63u - (unsigned)__builtin_clzll(ns) - HIST_SUB_BITS;   /* ns >> e is in [32, 64) */
  return (e + 1) * HIST_SUB + (unsigned)(ns >> e) - HIST_SUB;
}

/* The middle of bucket i. */
static double hist_bucket_ns(unsigned i)
{
  if (i < 2 * HIST_SUB)
    return i;
  unsigned e = i / HIST_SUB - 1;
  uint64_t low = (uint64_t)(i % HIST_SUB + HIST_SUB) << e;
  return (double)low + (double)(1ull << e) / 2;
}

void hist_add(struct hist *h, uint64_t ns)
{
  h->count++;
  h->sum_ns += ns;
  h->b[hist_index(ns)]++;
}

uint64_t lap(struct hist *h, uint64_t since)
{
  uint64_t now = now_ns();
  hist_add(h, now - since);
  return now;
}

void hist_merge(struct hist *into, const struct hist *h)
{
  into->count += h->count;
  into->sum_ns += h->sum_ns;
  for (unsigned i = 0; i < HIST_BUCKETS; i++)
    into->b[i] += h->b[i];
}

double hist_quantile_ms(const struct hist *h, double q)
{
  uint64_t rank = (uint64_t)(q * (double)h->count + 0.999999), seen = 0;
  if (rank == 0)
    rank = 1;
  for (unsigned i = 0; i < HIST_BUCKETS; i++)
    if ((seen += h->b[i]) >= rank)
      return hist_bucket_ns(i) / 1e6;
  return 0;
}

double hist_mean_ms(const struct hist *h)
{
  return h->count ? (double)h->sum_ns / (double)h->count / 1e6 : 0;
}

/* ---- keys and values ------------------------------------------------------- */

uint64_t mix64(uint64_t x)
{
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

int kv_alloc(struct kv *kv, unsigned key_bytes, unsigned value_bytes, unsigned value_random_pct)
{
  kv->klen = key_bytes;
  kv->vlen = value_bytes;
  kv->vrandom = kv->vlen * value_random_pct / 100;
  kv->key = malloc(kv->klen);
  kv->val = malloc(kv->vlen + 1);
  return kv->key && kv->val ? 0 : fail("out of memory");
}

void kv_free(struct kv *kv)
{
  free(kv->key);
  free(kv->val);
}

/* 0 for the workloads that write each key once; the loads of read_sst and
** amplification count from 1. */
void kv_set_version(struct kv *kv, uint64_t id, uint64_t version)
{
  memset(kv->key, 'k', kv->klen);
  for (unsigned b = 0; b < 8; b++)
    kv->key[b] = (unsigned char)(id >> (56 - 8 * b));
  uint64_t seed = id + version * 0x9e3779b97f4a7c15ull, w = 0;
  for (size_t j = 0; j < kv->vrandom; j++) {
    if (j % 8 == 0)
      w = mix64(seed ^ (j << 40));
    kv->val[j] = (unsigned char)(w >> (8 * (j % 8)));
  }
  memset(kv->val + kv->vrandom, 'v', kv->vlen - kv->vrandom);
}

/* ---- the machine ----------------------------------------------------------- */

#define TOUCH_PROBE_BYTES (64u << 20)

double page_touch_us(void)
{
  long page = sysconf(_SC_PAGESIZE);
  volatile uint8_t *p = mmap(NULL, TOUCH_PROBE_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED || page <= 0)
    return 0;
  uint64_t t0 = now_ns();
  for (size_t off = 0; off < TOUCH_PROBE_BYTES; off += (size_t)page)
    p[off] = 1;
  double us = (double)(now_ns() - t0) / 1000.0 / (double)(TOUCH_PROBE_BYTES / (size_t)page);
  munmap((void *)p, TOUCH_PROBE_BYTES);
  return us;
}

#define PAGE_CACHE_PROBE_BYTES (64u << 20)
#define PAGE_CACHE_PROBE_WRITE  (2u << 20)

/* MB/s of one pass of 2 MiB pwrites over the probe file; 0 on failure. */
static double write_pass_mbps(int fd, const char *buf)
{
  uint64_t t0 = now_ns();
  for (off_t off = 0; off < (off_t)PAGE_CACHE_PROBE_BYTES; off += PAGE_CACHE_PROBE_WRITE)
    if (pwrite(fd, buf, PAGE_CACHE_PROBE_WRITE, off) != (ssize_t)PAGE_CACHE_PROBE_WRITE)
      return 0;
  double seconds = (double)(now_ns() - t0) / NS_PER_S;
  return seconds > 0 ? PAGE_CACHE_PROBE_BYTES / 1e6 / seconds : 0;
}

/* A new file dir/NAME.PID, open read-write and already removed, so that
** its pages go back when it is closed and nothing is left behind; -1 with
** errno set on failure. */
static int unlinked_file(const char *dir, const char *name)
{
  char path[PATH_MAX];
  if ((size_t)snprintf(path, sizeof path, "%s/%s.%d", dir, name, (int)getpid()) >= sizeof path) {
    errno = ENAMETOOLONG;
    return -1;
  }
  int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd >= 0 && unlink(path) != 0) {
    int saved = errno;
    close(fd);
    errno = saved;
    return -1;
  }
  return fd;
}

void page_cache_probe(const char *dir, struct page_cache_probe *out)
{
  out->fresh_mbps = out->cached_mbps = 0;
  char *buf = malloc(PAGE_CACHE_PROBE_WRITE);
  if (!buf)
    return;
  memset(buf, 'p', PAGE_CACHE_PROBE_WRITE);   /* its own pages are in place before the clock starts */
  int fd = unlinked_file(dir, "page-cache-probe");
  if (fd >= 0) {
    out->fresh_mbps = write_pass_mbps(fd, buf);
    out->cached_mbps = out->fresh_mbps > 0 ? write_pass_mbps(fd, buf) : 0;
    close(fd);
  }
  free(buf);
}

void print_page_cache_probe(const struct page_cache_probe *p)
{
  printf("writes into the page cache: %.0f MB/s into fresh pages, %.0f MB/s over cached ones (%u MiB in %u MiB "
         "writes; every engine's new files pay the first)\n", p->fresh_mbps, p->cached_mbps,
         PAGE_CACHE_PROBE_BYTES >> 20, PAGE_CACHE_PROBE_WRITE >> 20);
}

#define PRIME_WRITE (256u << 10)   /* no 2 MiB folio: those always cost the host's memory (store.c) */

int prime_page_cache(const char *dir, unsigned mb)
{
  int fd = unlinked_file(dir, "page-cache-prime");
  if (fd < 0)
    return -1;
  int rc = 0;
  static char buf[PRIME_WRITE];
  memset(buf, 'p', sizeof buf);
  for (uint64_t off = 0; off < (uint64_t)mb << 20 && rc == 0; off += sizeof buf) {
    ssize_t n = pwrite(fd, buf, sizeof buf, (off_t)off);
    if (n >= 0 && n < (ssize_t)sizeof buf)
      errno = ENOSPC;   /* a short write: the file system is full */
    rc = n == (ssize_t)sizeof buf ? 0 : -1;
  }
  int saved = errno;
  close(fd);
  errno = saved;
  return rc;
}

#define SHM_PROBE_BYTES (16u << 20)

/* A fresh SHM_PROBE_BYTES file in dir, open read-write, already unlinked; -1 on failure. */
static int fresh_probe_file(const char *dir)
{
  int fd = unlinked_file(dir, "sochdb-bench-probe");
  if (fd < 0)
    return -1;
  if (ftruncate(fd, SHM_PROBE_BYTES) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

static double us_per_page(uint64_t t0, long page)
{
  return (double)(now_ns() - t0) / 1000.0 / (double)(SHM_PROBE_BYTES / (size_t)page);
}

void shm_write_probe(const char *dir, struct shm_write_probe *out)
{
  out->mapped_write_us = out->pwrite_us = 0;
  long page = sysconf(_SC_PAGESIZE);
  int fd = page > 0 ? fresh_probe_file(dir) : -1;
  if (fd >= 0) {
    (void)fallocate(fd, 0, 0, SHM_PROBE_BYTES);
    volatile uint8_t *p = mmap(NULL, SHM_PROBE_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p != MAP_FAILED) {
      (void)madvise((void *)p, SHM_PROBE_BYTES, MADV_POPULATE_WRITE);
      uint64_t t0 = now_ns();
      for (size_t off = 0; off < SHM_PROBE_BYTES; off += (size_t)page)
        p[off] = 1;
      out->mapped_write_us = us_per_page(t0, page);
      munmap((void *)p, SHM_PROBE_BYTES);
    }
    close(fd);
  }
  /* A pwrite into fresh pages is what page_cache_probe's first pass measures. */
  struct page_cache_probe pc;
  page_cache_probe(dir, &pc);
  if (pc.fresh_mbps > 0 && page > 0)
    out->pwrite_us = (double)page / pc.fresh_mbps;   /* 1 MB/s is a byte a microsecond */
}

void region_pages(const char *root, struct region_pages *out)
{
  char path[PATH_MAX];
  out->dir[0] = '\0';
  if (shm_region_path(root, path, sizeof path) != SOCHDB_OK) {
    snprintf(out->why, sizeof out->why, "%s", sochdb_last_error());
    out->bytes = 4096;
    return;
  }
  const char *slash = strrchr(path, '/');
  snprintf(out->dir, sizeof out->dir, "%.*s", slash ? (int)(slash - path) : 0, path);
  out->bytes = shm_page_bytes(path, out->why, sizeof out->why);
}

void print_region_pages(const struct region_pages *p)
{
  printf("sochdb's region: %s pages (%s)%s\n", p->bytes == SHM_HUGE_PAGE_BYTES ? "2 MiB" : "4 KiB", p->why,
         p->bytes == SHM_HUGE_PAGE_BYTES ? "" : "; 2 MiB pages: README, \"Huge pages\"");
}

void json_region_pages(FILE *f, const struct region_pages *p)
{
  fprintf(f, ",\n  \"region_page_bytes\": %llu,\n  \"region_pages\": ", (unsigned long long)p->bytes);
  json_str(f, p->why);
}

/* ---- files ----------------------------------------------------------------- */

void fs_type(const char *path, struct fs_info *fs)
{
  static const struct { unsigned long magic; const char *name; int mem; } known[] = {
    { 0xEF53, "ext2/3/4", 0 },     { 0x58465342, "xfs", 0 },   { 0x9123683E, "btrfs", 0 },
    { 0xF2F52010, "f2fs", 0 },     { 0x2FC12FC1, "zfs", 0 },   { 0x6969, "nfs", 0 },
    { 0x794C7630, "overlayfs", 0 }, { 0x01021994, "tmpfs", 1 }, { 0x858458F6, "ramfs", 1 },
  };
  struct statfs st;
  fs->in_memory = 0;
  if (statfs(path, &st) != 0) {
    snprintf(fs->name, sizeof fs->name, "unknown");
    return;
  }
  snprintf(fs->name, sizeof fs->name, "0x%lx", (unsigned long)st.f_type);
  for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
    if ((unsigned long)st.f_type == known[i].magic) {
      snprintf(fs->name, sizeof fs->name, "%s", known[i].name);
      fs->in_memory = known[i].mem;
    }
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
  (void)st, (void)flag, (void)ftw;
  if (remove(path) != 0 && errno != ENOENT)
    fail_errno("remove", path);
  return 0;
}

void rm_rf(const char *dir)
{
  if (access(dir, F_OK) == 0)
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* ---- sochdb's daemon ---------------------------------------------------------- */

int stop_daemon(const char *dir, int sig)
{
  int rc = sdb_daemon_stop(dir, sig, DAEMON_STOP_MS);
  return rc == SOCHDB_OK ? 0 : fail("%s", sochdb_last_error());
}

int stats_now(sochdb *db, sochdb_stats *st)
{
  int rc = sochdb_stats_get(db, st);
  return rc == SOCHDB_OK ? 0 : db_fail("stats", rc);
}

/* Nothing left for the daemon to do: every rotated-out memtable flushed and
** recycled (only the active one is live), level 0 below the compaction
** trigger, no level over its target. */
static int settled_now(const sochdb_stats *s)
{
  return s->memtables_in_use <= 1 && s->l0_files < L0_TRIGGER && s->compaction_debt_bytes == 0;
}

static int same_files(const sochdb_stats *a, const sochdb_stats *b)
{
  return a->flushes == b->flushes && a->compactions == b->compactions && a->sst_files == b->sst_files &&
         a->sst_bytes == b->sst_bytes;
}

int sochdb_wait_settled(sochdb *db, sochdb_stats *out, double *seconds)
{
  sochdb_stats prev, st;
  memset(&prev, 0, sizeof prev);
  uint64_t t0 = now_ns();
  for (unsigned stable = 0; stable < SETTLE_STABLE; prev = st) {
    if (interrupted)
      return fail("interrupted");
    if (stats_now(db, &st) != 0)
      return -1;
    double waited = (double)(now_ns() - t0) / NS_PER_S;
    stable = settled_now(&st) && same_files(&st, &prev) ? stable + 1 : 0;
    if (stable <= 1)   /* a streak starts (or none): the poll that found it settled */
      *seconds = waited;
    if (waited > SETTLE_MAX_S)
      return fail("flushing and compaction did not settle within %.0f s: %u memtables live, %u L0 files, "
                  "compaction debt %llu bytes, %llu flushes, %llu compactions", SETTLE_MAX_S,
                  st.memtables_in_use, st.l0_files, (unsigned long long)st.compaction_debt_bytes,
                  (unsigned long long)st.flushes, (unsigned long long)st.compactions);
    if (stable < SETTLE_STABLE)
      sleep_us(SETTLE_POLL_US);
  }
  *out = st;
  return 0;
}

int sochdb_wait_durable(sochdb *db, uint64_t seq, double *seconds)
{
  sochdb_stats st;
  uint64_t t0 = now_ns();
  for (;;) {
    if (interrupted)
      return fail("interrupted");
    if (stats_now(db, &st) != 0)
      return -1;
    *seconds = (double)(now_ns() - t0) / NS_PER_S;
    if (st.durable_seq >= seq)
      return 0;
    if (*seconds > SETTLE_MAX_S)
      return fail("the log was not durable through commit %llu within %.0f s (durable through %llu)",
                  (unsigned long long)seq, SETTLE_MAX_S, (unsigned long long)st.durable_seq);
    sleep_us(DURABLE_POLL_US);
  }
}

/* ---- worker processes -------------------------------------------------------- */

static void kids_reaped(struct kids *k, unsigned i, int status)
{
  k->pid[i] = 0;
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    k->failed = 1;
}

int kids_spawn(struct kids *k, unsigned n, int (*child)(unsigned idx, void *ctx), void *ctx)
{
  *k = (struct kids){ calloc(n ? n : 1, sizeof(pid_t)), 0, 0 };
  if (!k->pid)
    return fail("out of memory");
  fflush(NULL);   /* nothing buffered is printed twice */
  for (; k->n < n; k->n++) {
    pid_t pid = fork();
    if (pid < 0)
      return fail("fork: %s", strerror(errno));
    if (pid == 0) {
      default_signals();
      _exit(child(k->n, ctx));
    }
    k->pid[k->n] = pid;
  }
  return 0;
}

int kids_poll(struct kids *k)
{
  for (unsigned i = 0; i < k->n; i++) {
    int status;
    if (k->pid[i] > 0 && waitpid(k->pid[i], &status, WNOHANG) == k->pid[i])
      kids_reaped(k, i, status);
  }
  return k->failed ? -1 : 0;
}

int kids_finish(struct kids *k, int kill_them)
{
  for (unsigned i = 0; i < k->n; i++) {
    int status;
    if (k->pid[i] > 0 && kill_them)
      kill(k->pid[i], SIGKILL);
    while (k->pid[i] > 0 && waitpid(k->pid[i], &status, 0) < 0)
      if (errno != EINTR) {
        k->pid[i] = 0;
        k->failed = 1;
      }
    if (k->pid[i] > 0)
      kids_reaped(k, i, status);
  }
  free(k->pid);
  k->pid = NULL;
  return k->failed ? -1 : 0;
}

int wait_count(atomic_uint *counter, unsigned n, struct kids *k, double max_s, const char *what)
{
  return wait_count_every(counter, n, k, max_s, what, 200);
}

int wait_count_every(atomic_uint *counter, unsigned n, struct kids *k, double max_s, const char *what,
                     unsigned poll_us)
{
  uint64_t deadline = now_ns() + (uint64_t)(max_s * NS_PER_S);
  while (atomic_load(counter) < n) {
    if (interrupted)
      return fail("interrupted");
    if (kids_poll(k) != 0)
      return fail("a worker process failed");
    if (now_ns() > deadline)
      return fail("the workers did not %s within %.0f s", what, max_s);
    sleep_us(poll_us);
  }
  return 0;
}

int wait_until(uint64_t t, struct kids *k)
{
  for (uint64_t now = now_ns(); now < t; now = now_ns()) {
    if (interrupted)
      return fail("interrupted");
    if (kids_poll(k) != 0)
      return fail("a worker process failed");
    uint64_t left_us = (t - now) / 1000;
    sleep_us(left_us < 50000 ? (unsigned)left_us : 50000);
  }
  return 0;
}

uint64_t cpu_ns(clockid_t clock)
{
  struct timespec ts;
  clock_gettime(clock, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t proc_cpu_ns(pid_t pid)
{
  char path[64], buf[1024];
  snprintf(path, sizeof path, "/proc/%ld/stat", (long)pid);
  FILE *f = fopen(path, "r");
  if (!f)
    return 0;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = 0;
  /* after "pid (comm) ": state is field 3, utime 14, stime 15 */
  char *p = strrchr(buf, ')');
  unsigned long long utime = 0, stime = 0;
  if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime, &stime) != 2)
    return 0;
  long hz = sysconf(_SC_CLK_TCK);
  return (uint64_t)((utime + stime) * (1000000000.0 / (double)(hz > 0 ? hz : 100)));
}

/* ---- output --------------------------------------------------------------------- */

void json_str(FILE *f, const char *s)
{
  fputc('"', f);
  for (; *s; s++)
    if (*s == '"' || *s == '\\')
      fprintf(f, "\\%c", *s);
    else if ((unsigned char)*s < 0x20)
      fprintf(f, "\\u%04x", (unsigned)(unsigned char)*s);
    else
      fputc(*s, f);
  fputc('"', f);
}

/* ---- memory ---------------------------------------------------------------------- */

/* "Name:   1234 kB" -> 1234 when line starts with name. */
static int kib_field(const char *line, const char *name, uint64_t *out)
{
  size_t n = strlen(name);
  if (strncmp(line, name, n) != 0)
    return 0;
  *out = strtoull(line + n, NULL, 10);
  return 1;
}

static int excluded(const char *path, const char *const *exclude, unsigned n)
{
  for (unsigned i = 0; i < n; i++)
    if (exclude[i] && exclude[i][0] && !strncmp(path, exclude[i], strlen(exclude[i])))
      return 1;
  return 0;
}

int mem_usage(pid_t pid, const char *const *exclude, unsigned n, struct mem_usage *out)
{
  char path[64], line[PATH_MAX + 128];
  uint64_t v;
  memset(out, 0, sizeof *out);
  if (pid)
    snprintf(path, sizeof path, "/proc/%ld/smaps", (long)pid);
  else
    snprintf(path, sizeof path, "/proc/self/smaps");
  FILE *f = fopen(path, "r");
  if (!f)
    return fail_errno("open", path);
  /* A mapping's header line: "start-end perms offset dev inode   [path]". */
  int skip = 0;
  while (fgets(line, sizeof line, f)) {
    unsigned long lo, hi;
    int name_at = 0;
    if (sscanf(line, "%lx-%lx %*s %*s %*s %*s %n", &lo, &hi, &name_at) == 2 && name_at > 0) {
      char *name = line + name_at;
      name[strcspn(name, "\n")] = 0;
      skip = excluded(name, exclude, n);
      continue;
    }
    if (kib_field(line, "Rss:", &v))
      out->rss_kib += v;
    else if (kib_field(line, "Private_Clean:", &v) || kib_field(line, "Private_Dirty:", &v)) {
      out->private_kib += v;
      if (skip)
        out->excluded_kib += v;
    }
  }
  fclose(f);
  return 0;
}
