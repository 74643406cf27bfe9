/*
** test_durable.c — the futexes of shm/durable.c: a group's publish wakes the
** SYNC committers waiting for its seqs, a kick wakes a WAL writer that
** sleeps, and an ASYNC commit's nudge one that dozes (and only one that
** dozes), however the wake and the writer's going to sleep interleave; and
** the note of where the log's durable groups end reads back whole or not at
** all (a writer killed between its words leaves no note); and a commit
** waits while the writer is a record ring behind (durable_may_claim).
**
** The region is a real one, opened through the public API without a daemon,
** so that nothing but the test moves durable_seq or sleeps on kick_futex.
** A missed wake shows as a wait that never returns: every wait here has a
** timeout far beyond the suite's, so such a bug fails the test by the
** suite's timeout instead of passing late. Waits start from threads that
** /proc shows asleep in a futex wait before the test wakes them, so the
** wakes under test are the ones that reach a sleeping thread.
**
** In-process only (threads, no fork): this file also runs under TSan.
*/
#include <criterion/criterion.h>

#include <pthread.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "durable.h"
#include "internal.h"
#include "sochdb.h"
#include "testutil.h"

TestSuite(durable, .init = tu_setup_without_daemon, .fini = tu_teardown, .timeout = 60);

#define FOREVER_MS 3600000u   /* an hour: only the suite's timeout ends such a wait */

static shm_region *open_region(void) { return &tu_open(8u << 20, 1u << 20, 0)->region; }

static uint64_t published(shm_region *r)
{
  return atomic_load_explicit(&r->hdr->published_seq, memory_order_acquire);
}

/* ------------------------------------------------------------ sleeping threads */

struct sleeper {
  pthread_t     thread;
  shm_region   *r;
  uint64_t      seq;          /* durable_wait's; unused by a writer */
  int           doze;         /* a writer's: durable_wait_kick's */
  _Atomic pid_t tid;          /* 0 until the thread runs */
  _Atomic int   done;
  int           result;
};

static void *wait_durable(void *arg)
{
  struct sleeper *s = arg;
  atomic_store(&s->tid, (pid_t)syscall(SYS_gettid));
  s->result = durable_wait(s->r, s->seq, FOREVER_MS);
  atomic_store(&s->done, 1);
  return NULL;
}

static void *wait_kick(void *arg)
{
  struct sleeper *s = arg;
  atomic_store(&s->tid, (pid_t)syscall(SYS_gettid));
  s->result = durable_wait_kick(s->r, FOREVER_MS, s->doze);
  atomic_store(&s->done, 1);
  return NULL;
}

/* The first line of /proc/self/task/TID/FILE, or "" if it cannot be read. */
static void task_line(pid_t tid, const char *file, char *out, size_t n)
{
  char path[64];
  snprintf(path, sizeof path, "/proc/self/task/%d/%s", (int)tid, file);
  out[0] = 0;
  FILE *f = fopen(path, "r");
  if (f) {
    if (!fgets(out, (int)n, f))
      out[0] = 0;
    fclose(f);
  }
}

/* The state letter of thread tid (R, S, ...), from /proc. */
static char thread_state(pid_t tid)
{
  char line[512];
  task_line(tid, "stat", line, sizeof line);
  const char *paren = strrchr(line, ')');   /* the name may hold spaces: the state follows its ')' */
  cr_assert(paren && paren[1] == ' ', "/proc/self/task/%d/stat: \"%s\"", (int)tid, line);
  return paren[2];
}

/* Asleep in a futex wait: state S, and a wait channel that names a futex
** function (futex_wait_queue, futex_do_wait, ... by kernel version) where
** the kernel shows it; where it shows none, state S alone. */
static int asleep_in_futex(pid_t tid)
{
  char wchan[128];
  task_line(tid, "wchan", wchan, sizeof wchan);
  return thread_state(tid) == 'S' && (strstr(wchan, "futex") || !wchan[0] || !strcmp(wchan, "0"));
}

/* How many times thread tid gave up the CPU by blocking: a sleeping waiter
** that a wake reaches runs, finds nothing, and blocks again, adding one. */
static unsigned long voluntary_switches(pid_t tid)
{
  char path[64], line[128];
  snprintf(path, sizeof path, "/proc/self/task/%d/status", (int)tid);
  FILE *f = fopen(path, "r");
  cr_assert_not_null(f, "open %s", path);
  unsigned long n = 0;
  int found = 0;
  while (!found && fgets(line, sizeof line, f))
    found = sscanf(line, "voluntary_ctxt_switches: %lu", &n) == 1;
  fclose(f);
  cr_assert(found, "%s has no voluntary_ctxt_switches", path);
  return n;
}

static void pause_ms(long ms)
{
  struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
  nanosleep(&ts, NULL);
}

/* Start s and return once it sleeps in its futex wait (/proc). */
static void start_sleeping(struct sleeper *s, shm_region *r, uint64_t seq, void *(*fn)(void *))
{
  s->r = r;
  s->seq = seq;
  atomic_init(&s->tid, 0);
  atomic_init(&s->done, 0);
  cr_assert_eq(pthread_create(&s->thread, NULL, fn, s), 0, "pthread_create");
  for (;;) {   /* done first: a thread that returned has no /proc entry left to read */
    cr_assert_eq(atomic_load(&s->done), 0, "the waiter for %llu returned without waiting (%d)",
                 (unsigned long long)seq, s->result);
    if (atomic_load(&s->tid) != 0 && asleep_in_futex(atomic_load(&s->tid)))
      return;
    pause_ms(1);
  }
}

static int finish(struct sleeper *s)
{
  pthread_join(s->thread, NULL);
  return s->result;
}

/* ------------------------------------------------------------ durable_wait */

Test(durable, a_wait_returns_at_once_when_durable_and_0_when_time_runs_out)
{
  shm_region *r = open_region();
  uint64_t d = durable_seq(r);
  cr_assert_eq(durable_wait(r, d, 0), 1, "seq %llu is durable already", (unsigned long long)d);
  cr_assert_eq(durable_wait(r, d + 1, 20), 0, "nothing made %llu durable", (unsigned long long)(d + 1));
  durable_publish(r, d + 1);
  cr_assert_eq(durable_wait(r, d + 1, 20), 1, "published durable");
  tu_close();
}

Test(durable, a_publish_wakes_the_waiters_of_the_seqs_it_covers)
{
  shm_region *r = open_region();
  uint64_t d = durable_seq(r);
  struct sleeper w[6];
  for (unsigned i = 0; i < 6; i++)
    start_sleeping(&w[i], r, d + 1 + i, wait_durable);
  durable_publish(r, d + 3);        /* a group of three */
  for (unsigned i = 0; i < 3; i++)
    cr_assert_eq(finish(&w[i]), 1, "waiter for %llu", (unsigned long long)(d + 1 + i));
  for (unsigned i = 3; i < 6; i++)
    cr_assert_eq(atomic_load(&w[i].done), 0, "waiter for %llu returned before its seq was durable",
                 (unsigned long long)(d + 1 + i));
  durable_publish(r, d + 4);        /* one */
  cr_assert_eq(finish(&w[3]), 1, "waiter for %llu", (unsigned long long)(d + 4));
  durable_publish(r, d + 6);        /* the other two */
  for (unsigned i = 4; i < 6; i++)
    cr_assert_eq(finish(&w[i]), 1, "waiter for %llu", (unsigned long long)(d + 1 + i));
  tu_close();
}

/* The point of the bits: a waiter whose commit is in the next group is not
** woken by this one (it would run only to sleep again). */
Test(durable, a_publish_leaves_the_next_groups_waiters_asleep)
{
  shm_region *r = open_region();
  uint64_t d = durable_seq(r);
  struct sleeper now, next;
  start_sleeping(&now, r, d + 2, wait_durable);
  start_sleeping(&next, r, d + 5, wait_durable);
  pid_t tid = atomic_load(&next.tid);
  unsigned long before = voluntary_switches(tid);
  durable_publish(r, d + 3);
  cr_assert_eq(finish(&now), 1, "the waiter for %llu", (unsigned long long)(d + 2));
  pause_ms(20);   /* room for a wrongly woken waiter to run and block again */
  cr_assert_eq(voluntary_switches(tid), before, "the waiter for %llu was woken by the group ending at %llu",
               (unsigned long long)(d + 5), (unsigned long long)(d + 3));
  cr_assert(asleep_in_futex(tid), "and sleeps on");
  durable_publish(r, d + 5);
  cr_assert_eq(finish(&next), 1, "the waiter for %llu", (unsigned long long)(d + 5));
  tu_close();
}

/* Seqs 32 apart share a futex bit: the later one's waiter wakes with the
** earlier one's group, must sleep again, and still wake with its own. */
Test(durable, waiters_32_seqs_apart_share_a_bit_and_each_returns_with_its_own_group)
{
  shm_region *r = open_region();
  uint64_t d = durable_seq(r);
  struct sleeper early, late;
  start_sleeping(&early, r, d + 1, wait_durable);
  start_sleeping(&late, r, d + 33, wait_durable);
  durable_publish(r, d + 1);
  cr_assert_eq(finish(&early), 1, "the earlier waiter");
  while (!asleep_in_futex(atomic_load(&late.tid)))   /* woken too: back to sleep */
    pause_ms(1);
  cr_assert_eq(atomic_load(&late.done), 0, "the later waiter returned before %llu was durable",
               (unsigned long long)(d + 33));
  durable_publish(r, d + 20);       /* a group whose bits miss d + 33's */
  pause_ms(20);
  cr_assert_eq(atomic_load(&late.done), 0, "the later waiter returned early");
  durable_publish(r, d + 33);
  cr_assert_eq(finish(&late), 1, "the later waiter");
  tu_close();
}

Test(durable, a_jump_of_32_seqs_or_more_wakes_every_waiter)
{
  shm_region *r = open_region();
  uint64_t d = durable_seq(r);
  struct sleeper w[4];
  static const unsigned ahead[4] = { 1, 17, 32, 40 };
  for (unsigned i = 0; i < 4; i++)
    start_sleeping(&w[i], r, d + ahead[i], wait_durable);
  durable_publish(r, d + 40);
  for (unsigned i = 0; i < 4; i++)
    cr_assert_eq(finish(&w[i]), 1, "waiter for %llu", (unsigned long long)(d + ahead[i]));
  tu_close();
}

/* ------------------------------------------------------------ kicks */

/* No work waits: durable_seq at published_seq. */
static void no_work(shm_region *r) { durable_publish(r, published(r)); }

/* A commit published: what a committer does before it kicks. */
static void new_work(shm_region *r)
{
  atomic_store_explicit(&r->hdr->published_seq, published(r) + 1, memory_order_release);
}

/* w: a writer asleep in durable_wait_kick (dozing or not) with no work
** waiting; then a commit is published, which wakes nobody by itself. */
static void writer_asleep_then_work(shm_region *r, struct sleeper *w, int doze)
{
  no_work(r);
  w->doze = doze;
  start_sleeping(w, r, 0, wait_kick);
  new_work(r);
}

Test(durable, a_kick_wakes_a_sleeping_writer)
{
  shm_region *r = open_region();
  struct sleeper w;
  writer_asleep_then_work(r, &w, 0);
  durable_kick(r);
  cr_assert_eq(finish(&w), 1, "the writer reports the kick");
  no_work(r);
  cr_assert_eq(durable_wait_kick(r, 20, 0), 0, "no kick, no work: the time runs out");
  cr_assert_eq(durable_wait_kick(r, 20, 1), 0, "nor when it dozes");
  new_work(r);
  cr_assert_eq(durable_wait_kick(r, FOREVER_MS, 0), 1, "published work: no sleep at all");
  cr_assert_eq(durable_wait_kick(r, FOREVER_MS, 1), 1, "nor a doze");
  tu_close();
}

Test(durable, a_nudge_wakes_a_dozing_writer)
{
  shm_region *r = open_region();
  struct sleeper w;
  writer_asleep_then_work(r, &w, 1);
  durable_nudge(r);
  cr_assert_eq(finish(&w), 1, "the dozing writer is woken by an ASYNC commit");
  tu_close();
}

/* A writer that does not doze writes the ASYNC commits of its next round in
** one group: their nudges must not wake it one by one. */
Test(durable, a_nudge_leaves_a_writer_that_does_not_doze_asleep)
{
  shm_region *r = open_region();
  struct sleeper w;
  writer_asleep_then_work(r, &w, 0);
  pid_t tid = atomic_load(&w.tid);
  unsigned long before = voluntary_switches(tid);   /* publishing the work woke nothing */
  durable_nudge(r);
  pause_ms(20);   /* room for a wrongly woken writer to run */
  cr_assert_eq(atomic_load(&w.done), 0, "the nudge woke a writer that does not doze");
  cr_assert_eq(voluntary_switches(tid), before, "the writer ran");
  durable_kick(r);
  cr_assert_eq(finish(&w), 1, "a kick still wakes it");
  tu_close();
}

/* The wake and the writer's going to sleep, started together many times:
** whichever comes first, the writer must not sleep through the commit. A
** kick is a read-modify-write of the writer's word; a nudge only reads it,
** after a fence (durable.c says why that is enough). */
struct race {
  shm_region       *r;
  pthread_barrier_t start;
  unsigned          rounds;
  int               doze;
  int               missed;
};

static void *writer_rounds(void *arg)
{
  struct race *x = arg;
  for (unsigned i = 0; i < x->rounds; i++) {
    pthread_barrier_wait(&x->start);
    if (durable_wait_kick(x->r, FOREVER_MS, x->doze) != 1)
      x->missed++;
    pthread_barrier_wait(&x->start);   /* the committer resets the work */
  }
  return NULL;
}

static void race(int doze, void (*wake)(shm_region *r))
{
  shm_region *r = open_region();
  struct race x = { .r = r, .rounds = 2000, .doze = doze };
  pthread_barrier_init(&x.start, NULL, 2);
  pthread_t writer;
  cr_assert_eq(pthread_create(&writer, NULL, writer_rounds, &x), 0, "pthread_create");
  for (unsigned i = 0; i < x.rounds; i++) {
    no_work(r);
    pthread_barrier_wait(&x.start);
    for (volatile unsigned spin = 0; spin < i % 64; spin++) {}   /* vary who comes first */
    new_work(r);
    wake(r);
    pthread_barrier_wait(&x.start);
  }
  pthread_join(writer, NULL);
  pthread_barrier_destroy(&x.start);
  cr_assert_eq(x.missed, 0, "rounds that ended without work or wake");
  tu_close();
}

Test(durable, a_kick_racing_the_writer_to_sleep_is_never_lost) { race(0, durable_kick); }

static void nudge(shm_region *r) { (void)durable_nudge(r); }

Test(durable, a_nudge_racing_the_writer_to_doze_is_never_lost) { race(1, nudge); }

/* ------------------------------------------------------------ the note of the log's end */

Test(durable, a_note_of_the_logs_end_reads_back_whole_or_not_at_all)
{
  shm_region *r = open_region();
  struct durable_log_end e;
  cr_assert_eq(durable_log_end(r, &e), 0, "a new region has no note of the log's end");
  const struct durable_log_end note = { 4096, 1024, 2048, 5000, 77, 75 };
  durable_note_log_end(r, &note);
  cr_assert_eq(durable_log_end(r, &e), 1);
  cr_assert(e.segment == note.segment && e.last_group == note.last_group && e.end_offset == note.end_offset &&
            e.next_lsn == note.next_lsn && e.seq == note.seq && e.logged_seq == note.logged_seq,
            "the note read back differs from the one written");
  /* a writer killed between its words: any one word new and the check old */
  _Atomic uint64_t *words[] = { &r->hdr->log_end.segment, &r->hdr->log_end.last_group, &r->hdr->log_end.end_offset,
                                &r->hdr->log_end.next_lsn, &r->hdr->log_end.seq, &r->hdr->log_end.logged_seq };
  for (size_t i = 0; i < sizeof words / sizeof words[0]; i++) {
    uint64_t was = atomic_load(words[i]);
    atomic_store(words[i], was + 8);
    cr_assert_eq(durable_log_end(r, &e), 0, "word %zu changed without its check, yet the note was taken", i);
    atomic_store(words[i], was);
  }
  cr_assert_eq(durable_log_end(r, &e), 1);
  durable_init(r, 1);
  cr_assert_eq(durable_log_end(r, &e), 0, "durable_init keeps no note");
  tu_close();
}

/* ------------------------------------------------------------ the record ring's bound */

struct late_writer {
  shm_region *r;
  _Atomic int committing;   /* the test's commit has started */
  _Atomic int catching_up;  /* about to move durable_seq over every published commit */
};

/* A WAL writer that catches up 50 ms after the commit starts: it calls
** every published commit durable, as a writer does once it wrote them. */
static void *catch_up_later(void *arg)
{
  struct late_writer *w = arg;
  while (!atomic_load(&w->committing))
    pause_ms(1);
  pause_ms(50);
  /* set before the publish: the commit may return the moment it lands */
  atomic_store(&w->catching_up, 1);
  durable_publish(w->r, published(w->r));
  return NULL;
}

/* A committer claims no sequence while the WAL writer is a record ring
** behind (durable_may_claim): the writer would find the ring entries of the
** commits it has not read yet overwritten. With no daemon here nothing
** writes the log, so exactly durable_max_lag commits go through; the next
** waits busy_timeout_ms and is SOCHDB_BUSY with nothing applied; and a
** commit that waits while the writer catches up goes on once it has. */
Test(durable, a_commit_waits_while_the_wal_writer_is_a_record_ring_behind)
{
  sochdb *db = tu_open(64u << 20, 16u << 20, 200);
  shm_region *r = &db->region;
  /* claims go on while next_seq - durable_seq <= durable_max_lag */
  uint64_t lag = atomic_load(&r->hdr->next_seq) - durable_seq(r), max_lag = durable_max_lag(r);
  cr_assert_eq(max_lag, 131072u - 256u * 128u, "a 64 MiB region's ring: %llu commits of lag",
               (unsigned long long)max_lag);
  cr_assert_leq(lag, 1, "a new database's next commit is %llu ahead of the log", (unsigned long long)lag);
  char k[32];
  for (uint64_t i = 0; i <= max_lag - lag; i++) {
    snprintf(k, sizeof k, "k%06llu", (unsigned long long)i);
    tu_commit_kv(db, k, "v", SOCHDB_ASYNC);
  }
  sochdb_stats before = tu_stats(db);
  sochdb_txn *t = tu_begin(db, 0);
  tu_put_str(t, "late", "v");
  int rc = sochdb_commit(t, SOCHDB_ASYNC);
  cr_assert_eq(rc, SOCHDB_BUSY, "a commit with the log %llu commits behind: %s", (unsigned long long)max_lag,
               sochdb_strerror(rc));
  cr_assert_not_null(strstr(sochdb_last_error(), "WAL writer stayed"), "%s", sochdb_last_error());
  cr_assert_eq(tu_stats(db).last_commit_seq, before.last_commit_seq, "the refused commit took a sequence");
  char buf[8];
  cr_assert_eq(tu_read_str(db, "late", buf, sizeof buf), SOCHDB_NOTFOUND, "the refused commit applied its put");

  db->busy_timeout_ms = 60000;   /* the rest must not depend on how fast this machine is */
  struct late_writer w = { .r = r };
  pthread_t writer;
  cr_assert_eq(pthread_create(&writer, NULL, catch_up_later, &w), 0);
  t = tu_begin(db, 0);
  tu_put_str(t, "late", "v");
  atomic_store(&w.committing, 1);
  tu_commit(t, SOCHDB_ASYNC, "once the writer caught up");
  cr_assert(atomic_load(&w.catching_up), "the commit went through before the writer caught up");
  pthread_join(writer, NULL);
  cr_assert_eq(tu_read_str(db, "late", buf, sizeof buf), SOCHDB_OK);
  tu_close();
}

/* The record ring takes a 128th of a region at most, between 65,536 and
** 262,144 entries (256 KiB and 1 MiB): a region of the default size gets
** the largest, so bursts of ASYNC commits outrun a slow fdatasync without
** waiting; a small one keeps its room for memtables (8 MiB still holds 4
** of 1 MiB). */
Test(durable, the_record_ring_grows_with_the_region_up_to_1_mib)
{
  static const struct { uint64_t region; uint32_t entries; } sizes[] = {
    { 8u << 20, 65536u }, { 32u << 20, 65536u }, { 64u << 20, 131072u }, { (128u << 20) - 4096, 131072u },
    { 128u << 20, 262144u }, { 1ull << 30, 262144u },
  };
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    cr_assert_eq(durable_ring_entries(sizes[i].region), sizes[i].entries, "a region of %llu bytes",
                 (unsigned long long)sizes[i].region);
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/ring%zu", tu_dir(), i);
    sochdb_options o = tu_options(sizes[i].region, 1u << 20, 0);
    sochdb *db = tu_open_with(dir, &o);
    const struct shm_header *h = db->region.hdr;
    cr_assert_eq(h->rec_ring_entries, sizes[i].entries, "%s: %u entries", dir, h->rec_ring_entries);
    cr_assert_geq(h->files_off - h->rec_ring_off, (uint64_t)sizes[i].entries * sizeof(shm_ref), "%s: its ring", dir);
    cr_assert_eq(durable_max_lag(&db->region), sizes[i].entries - 256u * 128u, "%s", dir);
    if (sizes[i].region == 8u << 20)
      cr_assert_geq(h->n_memtables, 4u, "8 MiB holds %u memtables of 1 MiB", h->n_memtables);
    sochdb_close(db);
    tu_remove_region(dir);   /* the directory goes with the test's */
  }
}

/* A writer leaving (its daemon stops) and a commit published at the same
** moment, many times over: either the writer's last look finds the commit,
** or the committer's nudge finds the writer leaving (and sees to a
** successor, src/txn.c); never neither, which would leave an acknowledged
** ASYNC commit with nobody to write it. */
struct leave_race {
  shm_region       *r;
  pthread_barrier_t start;
  unsigned          rounds;
  int               writer_saw;   /* this round: the last look found the commit */
};

static void *leaving_writer(void *arg)
{
  struct leave_race *x = arg;
  for (unsigned i = 0; i < x->rounds; i++) {
    pthread_barrier_wait(&x->start);
    durable_writer_leaves(x->r);
    x->writer_saw = atomic_load_explicit(&x->r->hdr->published_seq, memory_order_acquire) > durable_seq(x->r);
    pthread_barrier_wait(&x->start);   /* the committer judges the round, then resets it */
    pthread_barrier_wait(&x->start);
  }
  return NULL;
}

Test(durable, a_commit_published_as_the_writer_leaves_is_seen_by_one_of_the_two)
{
  shm_region *r = open_region();
  struct leave_race x = { .r = r, .rounds = 2000 };
  pthread_barrier_init(&x.start, NULL, 2);
  pthread_t writer;
  cr_assert_eq(pthread_create(&writer, NULL, leaving_writer, &x), 0, "pthread_create");
  unsigned missed = 0, committer_saw = 0;
  for (unsigned i = 0; i < x.rounds; i++) {
    no_work(r);
    durable_writer_arrives(r);
    pthread_barrier_wait(&x.start);
    for (volatile unsigned spin = 0; spin < i % 64; spin++) {}   /* vary who comes first */
    new_work(r);
    int leaving = durable_nudge(r);
    pthread_barrier_wait(&x.start);
    committer_saw += leaving;
    missed += !leaving && !x.writer_saw;
    pthread_barrier_wait(&x.start);
  }
  pthread_join(writer, NULL);
  pthread_barrier_destroy(&x.start);
  cr_assert_eq(missed, 0, "rounds in which neither the leaving writer nor the committer saw the other");
  cr_log_info("the committer found the writer leaving in %u of %u rounds", committer_saw, x.rounds);
  durable_writer_arrives(r);
  cr_assert_eq(durable_nudge(r), 0, "a writer that arrived is not leaving");
  tu_close();
}
