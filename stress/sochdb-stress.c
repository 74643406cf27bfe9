/*
** sochdb-stress.c — the command line of the multi-process stress suite
** (stress/README.md):
**
**   sochdb-stress run   [options]    workers for a time, then a check
**   sochdb-stress crash [options]    cycles of kill -9, each checked
**   sochdb-stress check DIR          check a kept run again
**
** Exit status: 0 clean; 1 anomalies (snapshot isolation violated, a commit
** lost); 2 usage; 3 the engine hung or a process failed (crashed, could not
** open the database).
*/
#include "stress.h"
#include "checker.h"

#include <dirent.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void usage(FILE *out)
{
  fprintf(out,
          "usage: sochdb-stress run   [options]\n"
          "       sochdb-stress crash [options]\n"
          "       sochdb-stress check DIR        (a run directory or one unit in it)\n"
          "options (defaults in brackets):\n"
          "  --dir DIR          run directory, must not exist [a new $TMPDIR/sochdb-stress.XXXXXX]\n"
          "  --workers N        worker processes, 1..64 [2 x cores]\n"
          "  --seconds S        run time [10]            --ops N   transactions per worker instead\n"
          "  --keys N           list keys [256]          --hot N   hot keys among them [4]\n"
          "  --hot-pct P        picks going to hot keys [40]\n"
          "  --maxlen N         ids per list generation, 2..%d [32]\n"
          "  --accounts N       bank accounts [8]        --balance N  initial balance [1000]\n"
          "  --registers N      put/delete registers [32]\n"
          "  --sync-pct P       SYNC share of write commits [50]\n"
          "  --large-pct P      read-modify-writes with 64 KiB - 1 MiB of padding [1]\n"
          "  --linger-pct P     read-modify-writes that wait, between their reads and their\n"
          "                     writes, for sochdbd to flush a memtable (at most 0.5 s), so\n"
          "                     that their conflicts are found in the SSTables [0]\n"
          "  --region-mb N      shared region size [library default]\n"
          "  --memtable-mb N    memtable size: small ones flush and compact often [library default]\n"
          "  --table-pct P      transactions on the columnar table (row appends, transfers,\n"
          "                     audits, filtered scans) [13]\n"
          "  --table-keys N     list chains kept in table rows [16]\n"
          "  --seed N           random seed [time and pid]\n"
          "  --stall-s S        no progress this long is a hang [60]\n"
          "  --keep             keep the run directory even when it passed\n"
          "  --fault F          make the workload misbehave, to see the checker catch it:\n"
          "                     lost-update, aborted-read or bank\n"
          "crash mode:\n"
          "  --cycles N         kill cycles [10]         --cycle-ms MS  mean cycle length [2000]\n"
          "  --remove-pct P     cycles that also remove the region file [30]\n"
          "  --power-loss-pct P cycles that end in a power cut: what was written but not\n"
          "                     fsynced is lost or torn (needs libsochdb-powercut.so) [0]\n"
          "  --fault-pct P      cycles whose daemon is sochdbd-testing with a random I/O\n"
          "                     fault armed (ENOSPC/EIO on WAL or SSTable writes) [0]\n",
          ST_MAX_LIST);
}

enum { O_DIR = 256, O_WORKERS, O_SECONDS, O_OPS, O_KEYS, O_HOT, O_HOT_PCT, O_MAXLEN, O_ACCOUNTS, O_BALANCE,
       O_REGISTERS, O_SYNC_PCT, O_LARGE_PCT, O_REGION_MB, O_SEED, O_STALL, O_KEEP, O_CYCLES, O_CYCLE_MS,
       O_REMOVE_PCT, O_FAULT, O_MEMTABLE_MB, O_TABLE_PCT, O_TABLE_KEYS, O_POWER_PCT, O_FAULT_PCT,
       O_LINGER_PCT };

static const struct option options[] = {
  { "dir", 1, 0, O_DIR }, { "workers", 1, 0, O_WORKERS }, { "seconds", 1, 0, O_SECONDS }, { "ops", 1, 0, O_OPS },
  { "keys", 1, 0, O_KEYS }, { "hot", 1, 0, O_HOT }, { "hot-pct", 1, 0, O_HOT_PCT }, { "maxlen", 1, 0, O_MAXLEN },
  { "accounts", 1, 0, O_ACCOUNTS }, { "balance", 1, 0, O_BALANCE }, { "registers", 1, 0, O_REGISTERS },
  { "sync-pct", 1, 0, O_SYNC_PCT }, { "large-pct", 1, 0, O_LARGE_PCT }, { "linger-pct", 1, 0, O_LINGER_PCT },
  { "region-mb", 1, 0, O_REGION_MB },
  { "seed", 1, 0, O_SEED }, { "stall-s", 1, 0, O_STALL }, { "keep", 0, 0, O_KEEP }, { "cycles", 1, 0, O_CYCLES },
  { "cycle-ms", 1, 0, O_CYCLE_MS }, { "remove-pct", 1, 0, O_REMOVE_PCT }, { "fault", 1, 0, O_FAULT }, { "memtable-mb", 1, 0, O_MEMTABLE_MB },
  { "table-pct", 1, 0, O_TABLE_PCT }, { "table-keys", 1, 0, O_TABLE_KEYS },
  { "power-loss-pct", 1, 0, O_POWER_PCT }, { "fault-pct", 1, 0, O_FAULT_PCT },
  { "help", 0, 0, 'h' }, { 0, 0, 0, 0 },
};

/* A number in [lo, hi], or exit 2. */
static double number(const char *opt, const char *s, double lo, double hi)
{
  char *end;
  double v = strtod(s, &end);
  if (end == s || *end || v < lo || v > hi) {
    fprintf(stderr, "sochdb-stress: --%s %s: want a number in [%g, %g]\n", opt, s, lo, hi);
    exit(2);
  }
  return v;
}

static unsigned pct(const char *opt, const char *s)
{
  return (unsigned)number(opt, s, 0, 100);
}

static int fault_kind(const char *s)
{
  static const char *const names[] = { "lost-update", "aborted-read", "bank" };
  for (int i = 0; i < 3; i++)
    if (!strcmp(s, names[i])) return ST_FAULT_LOST_UPDATE + i;
  fprintf(stderr, "sochdb-stress: --fault %s: want lost-update, aborted-read or bank\n", s);
  exit(2);
}

static int seconds_given;

static void set_option(st_cfg *c, int o, const char *a)
{
  seconds_given |= o == O_SECONDS;
  const char *name = options[o - O_DIR].name;
  switch (o) {
  case O_DIR:        c->dir = a; break;
  case O_WORKERS:    c->workers = (int)number(name, a, 1, ST_MAX_WORKERS); break;
  case O_SECONDS:    c->seconds = number(name, a, 0, 1e7); break;
  case O_OPS:        c->ops = (long)number(name, a, 0, 1e12); break;
  case O_KEYS:       c->keys = (unsigned)number(name, a, 8, 65535); break;
  case O_HOT:        c->hot = (unsigned)number(name, a, 0, 65535); break;
  case O_HOT_PCT:    c->hot_pct = pct(name, a); break;
  case O_MAXLEN:     c->maxlen = (unsigned)number(name, a, 2, ST_MAX_LIST); break;
  case O_ACCOUNTS:   c->accounts = (unsigned)number(name, a, 2, 65535); break;
  case O_BALANCE:    c->balance = (int64_t)number(name, a, 0, 1e12); break;
  case O_REGISTERS:  c->registers = (unsigned)number(name, a, 1, 65535); break;
  case O_SYNC_PCT:   c->sync_pct = pct(name, a); break;
  case O_LARGE_PCT:  c->large_pct = pct(name, a); break;
  case O_LINGER_PCT: c->linger_pct = pct(name, a); break;
  case O_REGION_MB:  c->region_mb = (size_t)number(name, a, 0, 1 << 20); break;
  case O_SEED:       c->seed = (uint64_t)strtoull(a, NULL, 0); break;
  case O_STALL:      c->stall_s = (unsigned)number(name, a, 1, 1e6); break;
  case O_KEEP:       c->keep = 1; break;
  case O_CYCLES:     c->cycles = (unsigned)number(name, a, 1, 1e9); break;
  case O_CYCLE_MS:   c->cycle_ms = (unsigned)number(name, a, 50, 1e8); break;
  case O_REMOVE_PCT: c->remove_pct = pct(name, a); break;
  case O_FAULT:      c->fault = fault_kind(a); break;
  case O_MEMTABLE_MB: c->memtable_mb = (size_t)number(name, a, 1, 1 << 20); break;
  case O_TABLE_PCT:  c->table_pct = pct(name, a); break;
  case O_TABLE_KEYS: c->table_keys = (unsigned)number(name, a, 1, 65535); break;
  case O_POWER_PCT:  c->power_pct = pct(name, a); break;
  case O_FAULT_PCT:  c->fault_pct = pct(name, a); break;
  }
}

static int parse_args(st_cfg *c, int argc, char **argv)
{
  int o;
  while ((o = getopt_long(argc, argv, "h", options, NULL)) != -1) {
    if (o == 'h') {
      usage(stdout);
      exit(0);
    }
    if (o < O_DIR) return -1;
    set_option(c, o, optarg);
  }
  if (optind != argc) return -1;
  if (c->ops && !seconds_given) c->seconds = 0;   /* --ops alone: no time limit */
  if (c->hot > c->keys) c->hot = c->keys;
  return 0;
}

/* The run directory: given (must not exist yet) or a new temporary one. */
static int make_run_dir(st_cfg *c, char *buf, size_t n)
{
  if (c->dir) {
    struct stat st;
    if (stat(c->dir, &st) == 0) {
      fprintf(stderr, "sochdb-stress: %s exists; give a new directory\n", c->dir);
      return -1;
    }
    return st_mkdir(c->dir);
  }
  const char *tmp = getenv("TMPDIR");
  snprintf(buf, n, "%s/sochdb-stress.XXXXXX", tmp && *tmp ? tmp : "/tmp");
  if (!mkdtemp(buf)) {
    perror(buf);
    return -1;
  }
  c->dir = buf;
  return 0;
}

/* ------------------------------------------------------------ check */

static int is_unit(const char *dir)
{
  char path[4300];
  struct stat st;
  return stat(st_path(path, sizeof path, dir, "meta"), &st) == 0 &&
         stat(st_path(path, sizeof path, dir, "final.state"), &st) == 0;
}

static int cmp_str(const void *a, const void *b)
{
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Check one unit, or every unit in a run directory. */
static int cmd_check(const char *dir)
{
  stress_report total = { 0 };
  int worst = 0;
  struct dirent **list = NULL;
  int n = is_unit(dir) ? 0 : scandir(dir, &list, NULL, NULL);
  char **units = calloc((size_t)(n > 0 ? n : 0) + 1, sizeof *units);
  int m = 0;
  if (n == 0 && is_unit(dir)) units[m++] = strdup(dir);
  for (int i = 0; i < n; i++) {
    char path[4300];
    if (list[i]->d_name[0] != '.' && is_unit(st_path(path, sizeof path, dir, list[i]->d_name)))
      units[m++] = strdup(path);
    free(list[i]);
  }
  free(list);
  qsort(units, (size_t)m, sizeof *units, cmp_str);
  for (int i = 0; i < m; i++) {
    stress_report r;
    printf("check of %s:\n", units[i]);
    int rc = stress_check_unit(units[i], stdout, &r);
    stress_report_print(stdout, &r);
    stress_report_add(&total, &r);
    if (rc < 0 || (rc > 0 && worst == 0)) worst = rc < 0 ? 3 : 1;
    free(units[i]);
  }
  free(units);
  if (m == 0) {
    fprintf(stderr, "sochdb-stress: no check unit (a directory with meta and final.state) in %s\n", dir);
    return 2;
  }
  if (m > 1) {
    printf("all %d units:\n", m);
    stress_report_print(stdout, &total);
  }
  printf("RESULT: %s\n", worst ? "FAILED" : "OK");
  return worst;
}

int main(int argc, char **argv)
{
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
    usage(argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  const char *cmd = argv[1];
  if (!strcmp(cmd, "check")) {
    if (argc != 3) {
      usage(stderr);
      return 2;
    }
    return cmd_check(argv[2]);
  }
  st_cfg c;
  st_cfg_defaults(&c);
  char dirbuf[4096];
  if ((strcmp(cmd, "run") && strcmp(cmd, "crash")) || parse_args(&c, argc - 1, argv + 1) != 0) {
    usage(stderr);
    return 2;
  }
  if (make_run_dir(&c, dirbuf, sizeof dirbuf) != 0) return 2;
  return !strcmp(cmd, "run") ? st_run_normal(&c) : st_run_crash(&c);
}
