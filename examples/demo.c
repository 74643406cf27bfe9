/*
** demo.c — the sochdb quick start: several processes read AND write one
** database at the same time, and every snapshot they take is consistent.
**
**   sochdb-demo [--workers N] [--transfers N] [DIR]
**
** The parent creates 8 bank accounts of 1000 each. Then N worker processes
** move random amounts between random accounts, all at once, while a reader
** process keeps summing every balance. Money is only moved, never created,
** so every snapshot must add up to 8000; snapshot isolation guarantees it
** even though nobody takes a lock. When two transfers touch the same account
** at the same time, the later commit gets SOCHDB_CONFLICT and simply retries.
*/
#include "sochdb.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#define ACCOUNTS        8
#define INITIAL_BALANCE 1000
#define TOTAL           (ACCOUNTS * INITIAL_BALANCE)
#define MAX_AMOUNT      50
#define CHECK_EVERY     200     /* transfers between a worker's own snapshot checks */
#define MAX_WORKERS     32

typedef struct config {
  const char *dir;
  int workers;
  int transfers;                /* per worker */
} config;

/* ------------------------------------------------------------- helpers */

/* Reads sochdb_strerror() first: sochdb_last_error() is only guaranteed
** until this thread's next sochdb call. */
static void report(const char *who, const char *what, int rc)
{
  const char *message = sochdb_strerror(rc);
  const char *detail = sochdb_last_error();
  fprintf(stderr, "%s: %s: %s%s%s%s\n", who, what, message,
          detail[0] ? " (" : "", detail, detail[0] ? ")" : "");
}

/* Ends a transaction that failed. Reports first: sochdb_abort() is a
** sochdb call too, and may replace what sochdb_last_error() says. */
static int fail_txn(sochdb_txn *t, const char *who, const char *what, int rc)
{
  report(who, what, rc);
  sochdb_abort(t);
  return rc;
}

static size_t account_key(int account, char key[16])
{
  return (size_t)snprintf(key, 16, "acct/%d", account);
}

/* Balances are stored as decimal text so that `sochdb scan DIR` shows them. */
static int read_balance(sochdb_txn *t, int account, long *balance)
{
  char key[16], text[24];
  const void *val;
  size_t vlen;
  int rc = sochdb_get(t, key, account_key(account, key), &val, &vlen);
  if (rc != SOCHDB_OK)
    return rc;
  if (vlen == 0 || vlen >= sizeof text)
    return SOCHDB_CORRUPT;
  memcpy(text, val, vlen);      /* the value is not NUL-terminated */
  text[vlen] = '\0';
  char *end;
  *balance = strtol(text, &end, 10);
  return *end == '\0' ? SOCHDB_OK : SOCHDB_CORRUPT;
}

static int write_balance(sochdb_txn *t, int account, long balance)
{
  char key[16], text[24];
  int len = snprintf(text, sizeof text, "%ld", balance);
  return sochdb_put(t, key, account_key(account, key), text, (size_t)len);
}

/* The sum of all balances in one read-only snapshot; errors are reported.
** Read-only transactions never block and are never blocked by writers. */
static int sum_balances(sochdb *db, const char *who, long *total)
{
  sochdb_txn *t;
  int rc = sochdb_txn_begin(db, SOCHDB_TXN_READONLY, &t);
  if (rc != SOCHDB_OK) {
    report(who, "cannot begin a snapshot", rc);
    return rc;
  }
  *total = 0;
  for (int i = 0; i < ACCOUNTS; i++) {
    long balance;
    if ((rc = read_balance(t, i, &balance)) != SOCHDB_OK)
      return fail_txn(t, who, "cannot read a balance", rc);
    *total += balance;
  }
  rc = sochdb_commit(t, 0);     /* a read-only commit just releases the snapshot */
  if (rc != SOCHDB_OK)
    report(who, "cannot end a snapshot", rc);
  return rc;
}

/* splitmix64: a tiny, good PRNG, so each worker has its own sequence. */
static uint64_t next_random(uint64_t *state)
{
  uint64_t z = (*state += 0x9e3779b97f4a7c15u);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
  return z ^ (z >> 31);
}

static int random_below(uint64_t *state, int n)
{
  return (int)(next_random(state) % (uint64_t)n);
}

/* --------------------------------------------------------------- setup */

static int create_accounts(const char *dir)
{
  sochdb *db;
  int rc = sochdb_open(dir, NULL, &db);   /* NULL options: defaults, create if missing */
  if (rc != SOCHDB_OK) {
    report("demo", "cannot open the database", rc);
    return -1;
  }
  sochdb_txn *t = NULL;          /* sochdb_abort(NULL) is a no-op */
  rc = sochdb_txn_begin(db, 0, &t);
  for (int i = 0; i < ACCOUNTS && rc == SOCHDB_OK; i++)
    rc = write_balance(t, i, INITIAL_BALANCE);
  if (rc != SOCHDB_OK)
    fail_txn(t, "demo", "cannot create the accounts", rc);
  else if ((rc = sochdb_commit(t, SOCHDB_SYNC)) != SOCHDB_OK)   /* SYNC: durable before we go on */
    report("demo", "cannot commit the accounts", rc);
  /* A handle must not cross fork(): close it, and let every child open its own. */
  sochdb_close(db);
  return rc == SOCHDB_OK ? 0 : -1;
}

/* -------------------------------------------------------------- worker */

typedef struct transfer {
  int from, to;
  long amount;
} transfer;

/* One attempt at a transfer, in its own transaction. Returns SOCHDB_OK,
** SOCHDB_CONFLICT (nothing happened; try again) or an error, reported. */
static int try_transfer(sochdb *db, const char *who, const transfer *tr)
{
  sochdb_txn *t;
  int rc = sochdb_txn_begin(db, 0, &t);
  if (rc != SOCHDB_OK) {
    report(who, "cannot begin a transfer", rc);
    return rc;
  }
  long from, to;
  if ((rc = read_balance(t, tr->from, &from)) != SOCHDB_OK ||
      (rc = read_balance(t, tr->to, &to)) != SOCHDB_OK)
    return fail_txn(t, who, "cannot read a balance", rc);
  /* No overdraft: the transfer is declined and the transaction writes nothing. */
  if (from >= tr->amount &&
      ((rc = write_balance(t, tr->from, from - tr->amount)) != SOCHDB_OK ||
       (rc = write_balance(t, tr->to, to + tr->amount)) != SOCHDB_OK))
    return fail_txn(t, who, "cannot write a balance", rc);
  /* ASYNC: the commit is visible to everyone at once and crash-atomic; it
  ** only skips waiting for fdatasync, which a demo has no need for. */
  rc = sochdb_commit(t, SOCHDB_ASYNC);
  if (rc != SOCHDB_OK && rc != SOCHDB_CONFLICT)
    report(who, "cannot commit a transfer", rc);
  return rc;
}

/* First committer wins: when another process changed one of our accounts
** after our snapshot, our commit is refused and we run it again on a fresh
** snapshot. Someone always wins, so the retries always end. */
static int transfer_with_retries(sochdb *db, const char *who, const transfer *tr, long *conflicts)
{
  int rc;
  while ((rc = try_transfer(db, who, tr)) == SOCHDB_CONFLICT)
    (*conflicts)++;
  return rc;
}

static transfer random_transfer(uint64_t *rng)
{
  transfer tr;
  tr.from = random_below(rng, ACCOUNTS);
  tr.to = (tr.from + 1 + random_below(rng, ACCOUNTS - 1)) % ACCOUNTS;   /* never from itself */
  tr.amount = 1 + random_below(rng, MAX_AMOUNT);
  return tr;
}

/* Returns 1 when the snapshot adds up, 0 when it does not, -1 on error.
** Only a process's first violation is printed: the reader takes thousands
** of snapshots, and one message says all there is to say. */
static int check_snapshot(sochdb *db, const char *who)
{
  static int violation_reported;
  long total;
  if (sum_balances(db, who, &total) != SOCHDB_OK)
    return -1;
  if (total != TOTAL && !violation_reported) {
    fprintf(stderr, "%s: VIOLATION: a snapshot sums to %ld, not %d (later ones are only counted)\n",
            who, total, TOTAL);
    violation_reported = 1;
  }
  return total == TOTAL;
}

/* The body of one worker process; returns its exit status. */
static int run_worker(const config *cfg, int id)
{
  char who[32];
  snprintf(who, sizeof who, "worker %d", id);
  sochdb *db;
  int rc = sochdb_open(cfg->dir, NULL, &db);   /* our own handle, opened after fork() */
  if (rc != SOCHDB_OK) {
    report(who, "cannot open the database", rc);
    return 1;
  }
  uint64_t rng = (uint64_t)getpid();
  long conflicts = 0;
  int committed = 0, checks_ok = 0, violations = 0, errors = 0;
  for (int i = 1; i <= cfg->transfers && !errors; i++) {
    transfer tr = random_transfer(&rng);
    if (transfer_with_retries(db, who, &tr, &conflicts) != SOCHDB_OK) {
      errors++;
      break;
    }
    committed++;                /* declined ones too: their read-only commit succeeded */
    if (i % CHECK_EVERY == 0) {
      int ok = check_snapshot(db, who);
      checks_ok += ok == 1;
      violations += ok == 0;
      errors += ok < 0;
    }
  }
  sochdb_close(db);
  printf("%s (pid %ld): %d transfers committed, %ld conflicts retried, %d snapshot checks ok",
         who, (long)getpid(), committed, conflicts, checks_ok);
  if (violations > 0)
    printf(", %d VIOLATED", violations);
  printf("\n");
  return violations > 0 || errors > 0;
}

/* -------------------------------------------------------------- reader */

/* The parent closes the write end of the pipe when the workers are done;
** a pipe (unlike a signal) also stops the reader if the parent dies. */
static int stop_requested(int stop_fd)
{
  struct pollfd p = { .fd = stop_fd, .events = POLLIN };
  return poll(&p, 1, 0) != 0;   /* readable (EOF) or an error: stop either way */
}

static int run_reader(const config *cfg, int stop_fd)
{
  const char *who = "reader";
  sochdb *db;
  int rc = sochdb_open(cfg->dir, NULL, &db);
  if (rc != SOCHDB_OK) {
    report(who, "cannot open the database", rc);
    return 1;
  }
  long snapshots = 0, bad = 0;
  int errors = 0;
  do {
    int ok = check_snapshot(db, who);
    snapshots++;
    bad += ok == 0;
    errors += ok < 0;
  } while (!errors && !stop_requested(stop_fd));
  sochdb_close(db);
  printf("reader (pid %ld): %ld snapshots taken while the workers ran, %ld with a wrong total\n",
         (long)getpid(), snapshots, bad);
  return bad > 0 || errors > 0;
}

/* -------------------------------------------------------------- parent */

/* Flushing first keeps the child from inheriting, and printing twice,
** whatever the parent had buffered. */
static pid_t start_child(const config *cfg, int id, int stop_pipe[2])
{
  fflush(stdout);
  pid_t pid = fork();
  if (pid != 0)
    return pid;                 /* the parent, or -1 */
  close(stop_pipe[1]);          /* only the parent may hold it, or the reader never sees EOF */
  int status = id < 0 ? run_reader(cfg, stop_pipe[0]) : run_worker(cfg, id);
  exit(status);
}

/* Waits for pid; returns 1 when it exited with status 0. */
static int child_succeeded(pid_t pid)
{
  int status;
  while (waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) {
      perror("demo: waitpid");
      return 0;
    }
  if (WIFSIGNALED(status))
    fprintf(stderr, "demo: process %ld was killed by signal %d\n", (long)pid, WTERMSIG(status));
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

/* Runs the reader and the workers at once; returns 1 when all succeeded. */
static int run_children(const config *cfg)
{
  int stop_pipe[2];
  if (pipe(stop_pipe) != 0) {
    perror("demo: pipe");
    return 0;
  }
  pid_t reader = start_child(cfg, -1, stop_pipe);
  pid_t workers[MAX_WORKERS];
  int started = 0, ok = reader > 0;
  while (ok && started < cfg->workers) {
    workers[started] = start_child(cfg, started, stop_pipe);
    ok = workers[started] > 0;
    started += ok;
  }
  if (!ok)
    perror("demo: fork");
  for (int i = 0; i < started; i++)
    ok &= child_succeeded(workers[i]);
  close(stop_pipe[1]);          /* the workers are done: tell the reader to stop */
  close(stop_pipe[0]);
  if (reader > 0)
    ok &= child_succeeded(reader);
  return ok;
}

/* Reopens the database and shows what the processes left behind. */
static int print_final_state(const config *cfg)
{
  sochdb *db;
  int rc = sochdb_open(cfg->dir, NULL, &db);
  if (rc != SOCHDB_OK) {
    report("demo", "cannot reopen the database", rc);
    return 0;
  }
  sochdb_txn *t = NULL;
  long total = 0;
  rc = sochdb_txn_begin(db, SOCHDB_TXN_READONLY, &t);
  for (int i = 0; i < ACCOUNTS && rc == SOCHDB_OK; i++) {
    long balance;
    if ((rc = read_balance(t, i, &balance)) == SOCHDB_OK) {
      printf("  acct/%d  %5ld\n", i, balance);
      total += balance;
    }
  }
  if (rc != SOCHDB_OK)
    fail_txn(t, "demo", "cannot read the balances", rc);
  else if ((rc = sochdb_commit(t, 0)) != SOCHDB_OK)
    report("demo", "cannot end the snapshot", rc);
  else
    printf("  total   %5ld\n", total);

  sochdb_stats st;
  int src = sochdb_stats_get(db, &st);
  if (src == SOCHDB_OK)
    printf("stats: %" PRIu32 " process(es) attached, %" PRIu64 " commits, %" PRIu64
           " conflicts, last commit seq %" PRIu64 "\n",
           st.processes_attached, st.commits, st.conflicts, st.last_commit_seq);
  else
    report("demo", "cannot read the statistics", src);
  sochdb_close(db);
  return rc == SOCHDB_OK && src == SOCHDB_OK && total == TOTAL;
}

static int parse_count(const char *flag, const char *s, int max, int *out)
{
  char *end;
  long v = s ? strtol(s, &end, 10) : 0;
  if (s == NULL || *end != '\0' || end == s || v < 1 || v > max) {
    fprintf(stderr, "sochdb-demo: %s wants a number from 1 to %d\n", flag, max);
    return -1;
  }
  *out = (int)v;
  return 0;
}

/* Returns 0 to run the demo, 1 after --help, -1 on a usage error. */
static int parse_args(int argc, char **argv, config *cfg)
{
  static const char usage[] = "usage: sochdb-demo [--workers N] [--transfers N] [DIR]\n";
  for (int i = 1; i < argc; i++) {
    int rc = 0;
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      printf("%s", usage);
      return 1;
    } else if (strcmp(argv[i], "--workers") == 0)
      rc = parse_count("--workers", argv[++i], MAX_WORKERS, &cfg->workers);
    else if (strcmp(argv[i], "--transfers") == 0)
      rc = parse_count("--transfers", argv[++i], 10000000, &cfg->transfers);
    else if (argv[i][0] != '-' && cfg->dir == NULL)
      cfg->dir = argv[i];
    else
      rc = -1;
    if (rc != 0) {
      fputs(usage, stderr);
      return -1;
    }
  }
  return 0;
}

int main(int argc, char **argv)
{
  config cfg = { NULL, 4, 2000 };
  int parsed = parse_args(argc, argv, &cfg);
  if (parsed != 0)
    return parsed < 0 ? 2 : 0;  /* a usage error, or --help */
  char fresh[] = "/tmp/sochdb-demo-XXXXXX";
  if (cfg.dir == NULL) {
    if (mkdtemp(fresh) == NULL) {
      perror("sochdb-demo: mkdtemp");
      return 1;
    }
    cfg.dir = fresh;
  }
  printf("database: %s\n", cfg.dir);
  if (create_accounts(cfg.dir) != 0)
    return 1;
  printf("%d accounts of %d created; starting %d writer processes (%d transfers each) and 1 reader\n",
         ACCOUNTS, INITIAL_BALANCE, cfg.workers, cfg.transfers);

  int ok = run_children(&cfg);
  printf("final balances:\n");
  ok &= print_final_state(&cfg);
  if (!ok) {
    printf("demo FAILED: see the messages above\n");
    return 1;
  }
  printf("demo OK: %d writer processes and 1 reader shared one database; "
         "total balance %d in every snapshot\n", cfg.workers, TOTAL);
  printf("look inside: sochdb scan %s\n", cfg.dir);
  printf("remove it (its files and its shared memory): sochdb destroy %s\n", cfg.dir);
  return 0;
}
