/*
** test_error.c — error codes, their messages, the per-thread detail of the
** last failure, and bad input through the public API.
**
** Every bad call must return SOCHDB_INVALID (never crash, never succeed) and
** leave a non-empty sochdb_last_error() for the calling thread. Before each
** such call the detail is cleared (sdb_clear_error, internal) so that a
** leftover message from an earlier call cannot make the check pass.
**
** In-process only (threads, no fork): this file also runs under TSan.
*/
#include <criterion/criterion.h>
#include <criterion/logging.h>

#include <limits.h>
#include <pthread.h>

#include "error.h"
#include "sochdb.h"
#include "testutil.h"

/* ------------------------------------------------------------ fixture */

/* tu_teardown unlinks the region file of tu_db_dir by its path, whatever
** state the region is in. */
TestSuite(error, .init = tu_setup, .fini = tu_teardown, .timeout = 60);

/* Small region: nothing here needs the default 1 GiB. */
static sochdb *open_db(void) { return tu_open(8u << 20, 1u << 20, 0); }

/* Evaluate `call` with a cleared detail; it must return SOCHDB_INVALID and
** leave a detail behind. */
#define EXPECT_INVALID(call, what)                                                              \
  do {                                                                                          \
    sdb_clear_error();                                                                          \
    int rc_ = (call);                                                                           \
    cr_assert_eq(rc_, SOCHDB_INVALID, "%s: expected SOCHDB_INVALID (%d), got %d (%s)", (what),  \
                 SOCHDB_INVALID, rc_, sochdb_strerror(rc_));                                    \
    cr_assert(sochdb_last_error()[0] != '\0', "%s: SOCHDB_INVALID without a sochdb_last_error() " \
              "detail", (what));                                                                \
  } while (0)

/* ------------------------------------------------------------ messages */

Test(error, every_code_has_a_distinct_message)
{
  static const int codes[] = { SOCHDB_OK, SOCHDB_NOTFOUND, SOCHDB_CONFLICT, SOCHDB_BUSY, SOCHDB_INVALID,
                               SOCHDB_CORRUPT, SOCHDB_IO, SOCHDB_NOMEM, SOCHDB_VERSION, SOCHDB_DAEMON };
  const size_t n = sizeof codes / sizeof codes[0];
  const char *unknown = "unknown sochdb error";
  for (size_t i = 0; i < n; i++) {
    cr_assert_eq(codes[i], (int)i, "error codes are expected to be dense from 0: code %zu is %d", i, codes[i]);
    const char *m = sochdb_strerror(codes[i]);
    cr_assert_not_null(m, "sochdb_strerror(%d) returned NULL", codes[i]);
    cr_assert(m[0] != '\0', "sochdb_strerror(%d) is empty", codes[i]);
    cr_assert_str_neq(m, unknown, "known code %d got the unknown-code message", codes[i]);
    cr_assert_eq(sochdb_strerror(codes[i]), m, "sochdb_strerror(%d) is not a stable static string", codes[i]);
    for (size_t j = 0; j < i; j++)
      cr_assert_str_neq(m, sochdb_strerror(codes[j]), "codes %d and %d share the message \"%s\"", codes[i],
                        codes[j], m);
  }
}

Test(error, unknown_codes_have_the_unknown_message)
{
  static const int bad[] = { -1, -2, SOCHDB_DAEMON + 1, 11, 100, 12345, INT_MAX, INT_MIN };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    const char *m = sochdb_strerror(bad[i]);
    cr_assert_not_null(m, "sochdb_strerror(%d) returned NULL", bad[i]);
    cr_assert_str_eq(m, "unknown sochdb error", "sochdb_strerror(%d) = \"%s\"", bad[i], m);
  }
}

Test(error, last_error_starts_empty_and_records_the_detail)
{
  cr_assert_not_null(sochdb_last_error(), "sochdb_last_error() returned NULL");
  cr_assert_str_eq(sochdb_last_error(), "", "a fresh thread has detail \"%s\"", sochdb_last_error());
  sochdb *db = open_db();
  sochdb_txn *t = tu_begin(db, 0);
  char key[5000];
  memset(key, 'k', sizeof key);
  EXPECT_INVALID(sochdb_put(t, key, 5000, "v", 1), "put of a 5000-byte key");
  cr_assert(strstr(sochdb_last_error(), "5000") != NULL, "the detail should name the key length: \"%s\"",
            sochdb_last_error());
  /* sdb_fail_errno keeps errno and appends strerror */
  errno = ENOSPC;
  int rc = sdb_fail_errno("writing %s", "somewhere");
  cr_assert_eq(rc, SOCHDB_IO, "sdb_fail_errno returns SOCHDB_IO, not %d", rc);
  cr_assert_eq(errno, ENOSPC, "sdb_fail_errno must preserve errno (now %d)", errno);
  cr_assert(strstr(sochdb_last_error(), "writing somewhere") && strstr(sochdb_last_error(), strerror(ENOSPC)),
            "sdb_fail_errno detail: \"%s\"", sochdb_last_error());
  /* a very long detail is truncated, never overflows */
  char big[2000];
  memset(big, 'x', sizeof big - 1);
  big[sizeof big - 1] = 0;
  rc = sdb_fail(SOCHDB_CORRUPT, "%s", big);
  cr_assert_eq(rc, SOCHDB_CORRUPT, "sdb_fail returns its code unchanged, not %d", rc);
  size_t len = strlen(sochdb_last_error());
  cr_assert(len > 0 && len < sizeof big - 1, "a %zu-byte detail should be truncated, got %zu bytes",
            sizeof big - 1, len);
  /* sdb_fail_prefix puts context before the detail recorded last */
  sdb_fail(SOCHDB_CORRUPT, "data block at %d: checksum mismatch", 4096);
  rc = sdb_fail_prefix(SOCHDB_CORRUPT, "SSTable %06d", 7);
  cr_assert_eq(rc, SOCHDB_CORRUPT);
  cr_assert_str_eq(sochdb_last_error(), "SSTable 000007: data block at 4096: checksum mismatch");
  sochdb_abort(t);
  sochdb_close(db);
}

/* "A call that succeeds leaves it unchanged": an open of a new database
** looks for its CURRENT on the way, and that lookup's message used to
** replace the caller's last failure. */
Test(error, a_successful_open_leaves_the_last_error_alone)
{
  EXPECT_INVALID(sochdb_open(NULL, NULL, NULL), "open without a directory");
  char before[512];
  snprintf(before, sizeof before, "%s", sochdb_last_error());
  sochdb *db = open_db();   /* a new database: no CURRENT yet */
  cr_assert_str_eq(sochdb_last_error(), before, "the last error after a successful open");
  sochdb_close(db);
}

/* ------------------------------------------------------------ per thread */

struct lt_arg {
  sochdb *db;
  size_t klen;          /* the bad key length this thread uses (> SOCHDB_MAX_KEY, or 0) */
  char initial[64];     /* the detail this thread saw before failing anything */
  char after[512];      /* its detail after its own failing call */
  int rc;
  unsigned mismatches;  /* looped variant: detail not naming our own length */
  unsigned rounds;
};

static void *lt_single(void *p)
{
  struct lt_arg *a = p;
  snprintf(a->initial, sizeof a->initial, "%s", sochdb_last_error());
  sochdb_txn *t = NULL;
  if (sochdb_txn_begin(a->db, 0, &t) != SOCHDB_OK) {
    a->rc = -1;
    return NULL;
  }
  static char key[SOCHDB_MAX_KEY + 1000];
  a->rc = sochdb_put(t, key, a->klen, "v", 1);
  snprintf(a->after, sizeof a->after, "%s", sochdb_last_error());
  sochdb_abort(t);
  return NULL;
}

Test(error, last_error_is_per_thread)
{
  sochdb *db = open_db();
  sochdb_txn *t = tu_begin(db, 0);
  static char key[6000];
  EXPECT_INVALID(sochdb_put(t, key, 5555, "v", 1), "put of a 5555-byte key");
  char mine[512];
  snprintf(mine, sizeof mine, "%s", sochdb_last_error());
  cr_assert(strstr(mine, "5555"), "detail should name 5555: \"%s\"", mine);

  struct lt_arg a;
  memset(&a, 0, sizeof a);
  a.db = db;
  a.klen = 0;
  pthread_t th;
  cr_assert_eq(pthread_create(&th, NULL, lt_single, &a), 0, "pthread_create");
  TU_JOIN(th, "the thread");

  cr_assert_str_eq(a.initial, "", "a new thread inherited the detail \"%s\"", a.initial);
  cr_assert_eq(a.rc, SOCHDB_INVALID, "the thread's put of a 0-byte key returned %d", a.rc);
  cr_assert(a.after[0] && strstr(a.after, "0 bytes") && !strstr(a.after, "5555"),
            "the thread's detail should be its own: \"%s\"", a.after);
  cr_assert_str_eq(sochdb_last_error(), mine,
                   "another thread's failure changed this thread's detail: \"%s\" -> \"%s\"", mine,
                   sochdb_last_error());
  sochdb_abort(t);
  sochdb_close(db);
}

static void *lt_loop(void *p)
{
  struct lt_arg *a = p;
  static char key[SOCHDB_MAX_KEY + 1000];
  char want[32];
  snprintf(want, sizeof want, "%zu", a->klen);
  sochdb_txn *t = NULL;
  if (sochdb_txn_begin(a->db, 0, &t) != SOCHDB_OK) {
    a->rc = -1;
    return NULL;
  }
  for (unsigned i = 0; i < 2000; i++) {
    int rc = sochdb_put(t, key, a->klen, "v", 1);
    if (rc != SOCHDB_INVALID)
      a->rc = rc ? rc : -2;
    if (!strstr(sochdb_last_error(), want))
      a->mismatches++;
    /* a successful call in between must not expose another thread's detail */
    if (sochdb_put(t, "ok", 2, "v", 1) != SOCHDB_OK)
      a->rc = -3;
    const char *d = sochdb_last_error();
    if (d[0] && !strstr(d, want))
      a->mismatches++;
    a->rounds++;
  }
  sochdb_abort(t);
  return NULL;
}

Test(error, last_error_is_per_thread_under_concurrency)
{
  sochdb *db = open_db();
  enum { N = 4 };
  struct lt_arg a[N];
  pthread_t th[N];
  for (int i = 0; i < N; i++) {
    memset(&a[i], 0, sizeof a[i]);
    a[i].db = db;
    a[i].klen = SOCHDB_MAX_KEY + 1 + (size_t)i * 111;   /* 4097, 4208, ... */
    cr_assert_eq(pthread_create(&th[i], NULL, lt_loop, &a[i]), 0, "pthread_create");
  }
  for (int i = 0; i < N; i++)
    TU_JOIN(th[i], "a thread");
  for (int i = 0; i < N; i++) {
    cr_assert_eq(a[i].rc, 0, "thread %d: unexpected return code %d", i, a[i].rc);
    cr_assert_eq(a[i].rounds, 2000u, "thread %d ran %u rounds", i, a[i].rounds);
    cr_assert_eq(a[i].mismatches, 0u, "thread %d saw a detail not about its own %zu-byte key %u times", i,
                 a[i].klen, a[i].mismatches);
  }
  sochdb_close(db);
}

/* ------------------------------------------------------------ bad input */

Test(error, open_rejects_null_arguments)
{
  sochdb *db = (sochdb *)0x1;
  EXPECT_INVALID(sochdb_open(NULL, NULL, &db), "sochdb_open(NULL dir)");
  EXPECT_INVALID(sochdb_open("", NULL, &db), "sochdb_open(\"\")");
  EXPECT_INVALID(sochdb_open(tu_db_dir, NULL, NULL), "sochdb_open(out = NULL)");
  struct stat st;
  char id[4200];
  snprintf(id, sizeof id, "%s/sochdb.id", tu_db_dir);
  cr_assert_neq(stat(id, &st), 0, "a refused sochdb_open(out = NULL) still created %s", id);
}

Test(error, null_handles_and_transactions)
{
  sochdb_txn *t = (sochdb_txn *)0x1;
  sochdb_stats st;
  const void *v;
  size_t vl;
  sochdb_iter *it = (sochdb_iter *)0x1;
  EXPECT_INVALID(sochdb_txn_begin(NULL, 0, &t), "txn_begin(NULL db)");
  EXPECT_INVALID(sochdb_stats_get(NULL, &st), "stats_get(NULL db)");
  EXPECT_INVALID(sochdb_put(NULL, "k", 1, "v", 1), "put(NULL txn)");
  EXPECT_INVALID(sochdb_delete(NULL, "k", 1), "delete(NULL txn)");
  EXPECT_INVALID(sochdb_get(NULL, "k", 1, &v, &vl), "get(NULL txn)");
  EXPECT_INVALID(sochdb_commit(NULL, 0), "commit(NULL txn)");
  EXPECT_INVALID(sochdb_iter_open(NULL, NULL, 0, NULL, 0, &it), "iter_open(NULL txn)");
  EXPECT_INVALID(sochdb_iter_next(NULL, &v, &vl, &v, &vl), "iter_next(NULL iterator)");
  cr_assert_null(sochdb_region_path(NULL), "sochdb_region_path(NULL) should be NULL");
  /* documented no-ops */
  sochdb_abort(NULL);
  sochdb_iter_close(NULL);
  sochdb_close(NULL);

  sochdb *db = open_db();
  EXPECT_INVALID(sochdb_txn_begin(db, 0, NULL), "txn_begin(out = NULL)");
  EXPECT_INVALID(sochdb_stats_get(db, NULL), "stats_get(out = NULL)");
  sochdb_txn *rt = tu_begin(db, 0);
  EXPECT_INVALID(sochdb_get(rt, "k", 1, NULL, &vl), "get(val out = NULL)");
  EXPECT_INVALID(sochdb_get(rt, "k", 1, &v, NULL), "get(vlen out = NULL)");
  EXPECT_INVALID(sochdb_iter_open(rt, NULL, 0, NULL, 0, NULL), "iter_open(out = NULL)");
  sochdb_abort(rt);
  sochdb_close(db);
}

Test(error, key_lengths)
{
  sochdb *db = open_db();
  sochdb_txn *t = tu_begin(db, 0);
  static char key[SOCHDB_MAX_KEY + 1];
  memset(key, 'a', sizeof key);
  const void *v;
  size_t vl;

  EXPECT_INVALID(sochdb_put(t, NULL, 1, "v", 1), "put(NULL key)");
  EXPECT_INVALID(sochdb_put(t, key, 0, "v", 1), "put(0-byte key)");
  EXPECT_INVALID(sochdb_put(t, key, SOCHDB_MAX_KEY + 1, "v", 1), "put(4097-byte key)");
  EXPECT_INVALID(sochdb_put(t, key, (size_t)-1, "v", 1), "put(SIZE_MAX-byte key)");
  EXPECT_INVALID(sochdb_delete(t, NULL, 1), "delete(NULL key)");
  EXPECT_INVALID(sochdb_delete(t, key, 0), "delete(0-byte key)");
  EXPECT_INVALID(sochdb_delete(t, key, SOCHDB_MAX_KEY + 1), "delete(4097-byte key)");
  EXPECT_INVALID(sochdb_get(t, NULL, 1, &v, &vl), "get(NULL key)");
  EXPECT_INVALID(sochdb_get(t, key, 0, &v, &vl), "get(0-byte key)");
  EXPECT_INVALID(sochdb_get(t, key, SOCHDB_MAX_KEY + 1, &v, &vl), "get(4097-byte key)");

  sochdb_iter *it = NULL;
  EXPECT_INVALID(sochdb_iter_open(t, key, SOCHDB_MAX_KEY + 1, NULL, 0, &it), "iter_open(4097-byte start)");
  EXPECT_INVALID(sochdb_iter_open(t, NULL, 0, key, SOCHDB_MAX_KEY + 1, &it), "iter_open(4097-byte end)");
  EXPECT_INVALID(sochdb_iter_open(t, NULL, 3, NULL, 0, &it), "iter_open(NULL start with a length)");
  EXPECT_INVALID(sochdb_iter_open(t, NULL, 0, NULL, 3, &it), "iter_open(NULL end with a length)");

  /* the bounds themselves are accepted: 1 and 4096 bytes */
  int rc = sochdb_put(t, key, SOCHDB_MAX_KEY, "max", 3);
  cr_assert_eq(rc, SOCHDB_OK, "put of a %u-byte key: %s (%s)", SOCHDB_MAX_KEY, sochdb_strerror(rc),
               sochdb_last_error());
  rc = sochdb_put(t, key, 1, "one", 3);
  cr_assert_eq(rc, SOCHDB_OK, "put of a 1-byte key: %s", sochdb_strerror(rc));
  rc = sochdb_commit(t, 0);
  cr_assert_eq(rc, SOCHDB_OK, "commit: %s (%s)", sochdb_strerror(rc), sochdb_last_error());

  /* nothing refused above was written */
  t = tu_begin(db, SOCHDB_TXN_READONLY);
  rc = sochdb_get(t, key, SOCHDB_MAX_KEY, &v, &vl);
  cr_assert(rc == SOCHDB_OK && tu_val_eq(v, vl, "max"), "the 4096-byte key reads back: rc %d", rc);
  rc = sochdb_get(t, key, 1, &v, &vl);
  cr_assert(rc == SOCHDB_OK && tu_val_eq(v, vl, "one"), "the 1-byte key reads back: rc %d", rc);
  rc = sochdb_get(t, key, 2, &v, &vl);
  cr_assert_eq(rc, SOCHDB_NOTFOUND, "a 2-byte key was never written: rc %d", rc);
  sochdb_abort(t);
  sochdb_close(db);
}

Test(error, value_too_large_is_refused_before_reading_it)
{
  sochdb *db = open_db();
  sochdb_txn *t = tu_begin(db, 0);
  /* 8 readable bytes, announced as SOCHDB_MAX_VALUE + 1: the library must
  ** check the length before touching the bytes. */
  static const char small[8] = "abcdefg";
  EXPECT_INVALID(sochdb_put(t, "k", 1, small, (size_t)SOCHDB_MAX_VALUE + 1), "put(value of MAX_VALUE + 1)");
  cr_assert(strstr(sochdb_last_error(), "value") != NULL, "the detail should be about the value: \"%s\"",
            sochdb_last_error());
  EXPECT_INVALID(sochdb_put(t, "k", 1, small, (size_t)-1), "put(value of SIZE_MAX bytes)");
  EXPECT_INVALID(sochdb_put(t, "k", 1, small, (size_t)UINT32_MAX + 2), "put(value of 2^32 + 1 bytes)");
  /* a value that fits the limits but not this database's 1 MiB memtables */
  EXPECT_INVALID(sochdb_put(t, "k", 1, small, 1u << 20), "put(value larger than half a memtable)");
  const void *v;
  size_t vl;
  int rc = sochdb_get(t, "k", 1, &v, &vl);
  cr_assert_eq(rc, SOCHDB_NOTFOUND, "a refused put left something in the transaction: rc %d", rc);
  sochdb_abort(t);
  sochdb_close(db);
}

Test(error, null_value_with_length_is_refused)
{
  sochdb *db = open_db();
  sochdb_txn *t = tu_begin(db, 0);
  /* header: "value above SOCHDB_MAX_VALUE or NULL with vlen > 0" -> SOCHDB_INVALID */
  EXPECT_INVALID(sochdb_put(t, "k", 1, NULL, 16), "put(NULL value, 16 bytes)");
  const void *v;
  size_t vl;
  int rc = sochdb_get(t, "k", 1, &v, &vl);
  cr_assert_eq(rc, SOCHDB_NOTFOUND, "a refused put(NULL, 16) buffered a %zu-byte value", rc ? 0 : vl);
  sochdb_abort(t);
  sochdb_close(db);
}

Test(error, null_value_of_length_zero_is_an_empty_value)
{
  sochdb *db = open_db();
  sochdb_txn *t = tu_begin(db, 0);
  int rc = sochdb_put(t, "empty", 5, NULL, 0);
  cr_assert_eq(rc, SOCHDB_OK, "put(NULL, 0) is an empty value: %s (%s)", sochdb_strerror(rc), sochdb_last_error());
  rc = sochdb_commit(t, 0);
  cr_assert_eq(rc, SOCHDB_OK, "commit: %s", sochdb_strerror(rc));
  t = tu_begin(db, SOCHDB_TXN_READONLY);
  const void *v = NULL;
  size_t vl = 99;
  rc = sochdb_get(t, "empty", 5, &v, &vl);
  cr_assert_eq(rc, SOCHDB_OK, "the empty value reads back: %s", sochdb_strerror(rc));
  cr_assert_eq(vl, 0u, "the empty value has length %zu", vl);
  sochdb_abort(t);
  sochdb_close(db);
}

Test(error, writes_in_a_read_only_transaction)
{
  sochdb *db = open_db();
  sochdb_txn *t = tu_begin(db, SOCHDB_TXN_READONLY);
  EXPECT_INVALID(sochdb_put(t, "k", 1, "v", 1), "put in a read-only txn");
  EXPECT_INVALID(sochdb_delete(t, "k", 1), "delete in a read-only txn");
  const void *v;
  size_t vl;
  int rc = sochdb_get(t, "k", 1, &v, &vl);
  cr_assert_eq(rc, SOCHDB_NOTFOUND, "reads still work in the read-only txn, and nothing was buffered: rc %d", rc);
  rc = sochdb_commit(t, 0);
  cr_assert_eq(rc, SOCHDB_OK, "a read-only txn commits trivially: %s", sochdb_strerror(rc));
  sochdb_stats s;
  cr_assert_eq(sochdb_stats_get(db, &s), SOCHDB_OK, "stats");
  cr_assert_eq(s.commits, 0u, "a read-only txn counted %llu commits", (unsigned long long)s.commits);
  cr_assert_eq(s.last_commit_seq, 1u, "nothing was published: last seq %llu", (unsigned long long)s.last_commit_seq);
  sochdb_close(db);
}

Test(error, unknown_begin_flags)
{
  sochdb *db = open_db();
  static const unsigned bad[] = { 0x2u, 0x4u, 0x80000000u, SOCHDB_TXN_READONLY | 0x10u, ~0u };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    sochdb_txn *t = (sochdb_txn *)0x1;
    EXPECT_INVALID(sochdb_txn_begin(db, bad[i], &t), "txn_begin(unknown flags)");
    cr_assert_null(t, "txn_begin(0x%x) failed but left *out = %p", bad[i], (void *)t);
  }
  sochdb_stats s;
  cr_assert_eq(sochdb_stats_get(db, &s), SOCHDB_OK, "stats");
  cr_assert_eq(s.transactions_open, 0u, "refused begins left %u transactions open", s.transactions_open);
  sochdb_close(db);
}

Test(error, unknown_commit_flags_abort_and_free_the_transaction)
{
  sochdb *db = open_db();
  /* More rounds than a handle has transaction entries: if a refused commit
  ** leaked its entry, txn_begin would start failing with SOCHDB_BUSY. */
  const unsigned rounds = SOCHDB_MAX_TXNS_PER_HANDLE * 2 + 3;
  for (unsigned i = 0; i < rounds; i++) {
    sochdb_txn *t = tu_begin(db, 0);
    char key[32];
    int kl = snprintf(key, sizeof key, "k%u", i);
    int rc = sochdb_put(t, key, (size_t)kl, "v", 1);
    cr_assert_eq(rc, SOCHDB_OK, "put: %s", sochdb_strerror(rc));
    EXPECT_INVALID(sochdb_commit(t, 0x2u | (i & 1 ? SOCHDB_ASYNC : 0)), "commit(unknown flags)");
    cr_assert(strstr(sochdb_last_error(), "flag") != NULL, "detail should mention the flags: \"%s\"",
              sochdb_last_error());
  }
  sochdb_stats s;
  cr_assert_eq(sochdb_stats_get(db, &s), SOCHDB_OK, "stats");
  cr_assert_eq(s.transactions_open, 0u, "refused commits left %u transactions open", s.transactions_open);
  cr_assert_eq(s.commits, 0u, "a refused commit was counted as a commit");
  cr_assert_eq(s.last_commit_seq, 1u, "a refused commit published seq %llu", (unsigned long long)s.last_commit_seq);
  cr_assert_eq(s.aborts, (uint64_t)rounds, "every refused commit is an abort: %llu of %u",
               (unsigned long long)s.aborts, rounds);
  sochdb_txn *t = tu_begin(db, SOCHDB_TXN_READONLY);
  const void *v;
  size_t vl;
  int rc = sochdb_get(t, "k0", 2, &v, &vl);
  cr_assert_eq(rc, SOCHDB_NOTFOUND, "the writes of a refused commit became visible: rc %d", rc);
  sochdb_abort(t);
  sochdb_close(db);
}

Test(error, a_refused_call_leaves_the_transaction_usable)
{
  sochdb *db = open_db();
  sochdb_txn *t = tu_begin(db, 0);
  static char key[SOCHDB_MAX_KEY + 1];
  EXPECT_INVALID(sochdb_put(t, key, sizeof key, "v", 1), "put(4097-byte key)");
  int rc = sochdb_put(t, "good", 4, "value", 5);
  cr_assert_eq(rc, SOCHDB_OK, "put after a refused put: %s", sochdb_strerror(rc));
  rc = sochdb_commit(t, SOCHDB_ASYNC);
  cr_assert_eq(rc, SOCHDB_OK, "commit after a refused put: %s (%s)", sochdb_strerror(rc), sochdb_last_error());
  t = tu_begin(db, SOCHDB_TXN_READONLY);
  char buf[16];
  rc = tu_get_str(t, "good", buf, sizeof buf);
  cr_assert(rc == SOCHDB_OK && strcmp(buf, "value") == 0, "value after commit: rc %d \"%s\"", rc, buf);
  sochdb_abort(t);
  sochdb_close(db);
}
