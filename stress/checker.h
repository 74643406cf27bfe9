/*
** checker.h — the snapshot-isolation checker of sochdb-stress: it reads the
** histories the workers wrote during one run (or one crash cycle) and the
** database states read before and after it, and finds every anomaly that
** snapshot isolation (as sochdb defines it) forbids. Used by sochdb-stress
** after each run or cycle, by `sochdb-stress check DIR`, and by
** tests/test_stress_checker.c on hand-made histories.
**
** A check unit is one directory:
**   meta          key=value lines: accounts=K, balance=B (each account's
**                 initial balance: every snapshot of all K accounts sums to
**                 K*B), optionally row_accounts=, row_balance= (the same for
**                 the table's row bank, "U/" keys), region_removed=0|1 (the region file was removed
**                 before final.state was read, so final.state is the state
**                 rebuilt from the WAL), optionally workers=, seconds=, crash=
**   init.state    (optional) the state before the unit: every id in it is an
**                 earlier, committed transaction
**   hist-*.log    one history per worker process
**   final.state   the state after the unit (every worker stopped or killed)
**
** History format (text, one event per line, fields separated by one space):
**   H <worker> ...                header, ignored
**   T <id> <kind> <f> <b0> <b1> <c0>
**                                 a transaction's intent: kind is a word
**                                 (rmw, read, state, ...), f is s (SYNC
**                                 commit), a (ASYNC) or r (read-only); b0/b1
**                                 are CLOCK_MONOTONIC nanoseconds just before
**                                 and after sochdb_txn_begin, c0 just before
**                                 the commit call
**   R <key> <obs>                 a read in that transaction
**   W <key> <obs>                 a write ("-" = delete); the last W of a key
**                                 is the one committed
**   S <lo> <hi>                   a scan of [lo, hi): the R lines up to the
**                                 next Z line are what it returned, and any
**                                 key of the unit in the range it did not
**                                 return was absent in the snapshot
**   Z                             end of a scan
**   I <id>                        end of the intent (written with the T line
**                                 in one write(2), before the commit call)
**   O <id> <outcome> <c1>         after the commit call returned at c1:
**                                 ok, daemon (applied, durability not
**                                 confirmed), conflict, busy, invalid,
**                                 nomem, io, corrupt, error, abort
** A T..I record cut short (the worker was killed while writing it) is
** ignored: its commit was never called. A complete intent without its O line
** is a commit of unknown outcome.
**
** Ids are "<worker>.<counter>" in hex. An observation <obs> is "-" (absent),
** "?" (the bytes were not a valid value: counted as corrupt) or
** "<num>:<padlen>:<flags>:<id>,<id>,..." — num is a balance or a generation,
** padlen the bytes of padding after the ids, flags 1 = an intermediate value.
**
** Key families: "L/..." and "E/..." hold lists (each writer appends its own id
** to what it read); "D/<r>" is a register whose every put (value: the
** writer's id) or delete is appended, in the same transaction, to the list
** chain "E/<r>/<gen>"; "B/..." are bank accounts (num = balance, id = the
** writer); "G/..." are generation pointers (num); other keys are ignored.
** Rows of the columnar table are logged under pseudo-keys: "T/iiii/gggggg"
** (the list column of a table chain's row: a list key like "L/...") and
** "U/aaaa" (the row bank: num = the bal column; a projected {id, bal} read
** has no ids, "<bal>:0:0:"), a second bank family summing to
** row_accounts*row_balance; "V/<r>" (a row register, like "D/<r>", whose
** events are appended to the key-value list chain "F/<r>/<gen>").
*/
#ifndef SOCHDB_STRESS_CHECKER_H
#define SOCHDB_STRESS_CHECKER_H

#include <stdint.h>
#include <stdio.h>

enum {
  CK_ABORTED_READ,      /* saw a write of a transaction that did not commit (or never tried) */
  CK_INTERMEDIATE_READ, /* saw a value its writer overwrote before committing */
  CK_LOST_UPDATE,       /* a committed append was overwritten: its list diverges from the key's final list */
  CK_DIVERGENT_READ,    /* a read list that is not a prefix of the key's final list */
  CK_FRACTURED_READ,    /* a snapshot saw some of a transaction's appends but not all */
  CK_FUTURE_READ,       /* saw a transaction whose commit call began after the snapshot was taken */
  CK_STALE_READ,        /* missed a commit acknowledged before the transaction began */
  CK_NONREPEATABLE,     /* one snapshot read one key twice and saw two values */
  CK_BANK_SUM,          /* a snapshot of every account that does not add up */
  CK_REGISTER,          /* a register's value disagrees with the last operation of its event list */
  CK_CORRUPT_VALUE,     /* undecodable value, wrong padding, padding not what its writer wrote */
  CK_HALF_PRESENT,      /* after the unit, a transaction is in some of its keys and not in others */
  CK_LOST_COMMIT,       /* an acknowledged (durable) commit is missing from the state after the unit */
  CK_CYCLE_G1C,         /* a cycle of write and read dependencies (cyclic information flow) */
  CK_CYCLE_GSINGLE,     /* a dependency cycle with exactly one anti-dependency (read skew) */
  CK_NKINDS
};

typedef struct stress_report {
  unsigned units;            /* check units (runs or cycles) summed here */
  unsigned histories;        /* worker history files */
  uint64_t txns;             /* transactions with a complete intent */
  uint64_t committed;        /* outcome ok or daemon */
  uint64_t conflicted;
  uint64_t failed;           /* busy, invalid, io, ... and explicit aborts of failed steps */
  uint64_t unknown;          /* intent logged, no outcome (killed mid-commit) */
  uint64_t unknown_present;  /* ... of which found committed (and wholly so) */
  uint64_t readonly;         /* committed read-only transactions */
  uint64_t reads;            /* observations checked */
  uint64_t bank_snapshots;   /* snapshots that read every account */
  uint64_t long_rereads;     /* repeated reads of one key in one snapshot */
  uint64_t commits_verified; /* committed writers found in the final state */
  uint64_t nondurable_lost;  /* not-yet-durable commits gone with a removed region (allowed) */
  uint64_t write_skew;       /* dependency cycles with two or more anti-dependencies (allowed) */
  uint64_t anomalies[CK_NKINDS];
  uint64_t anomalies_total;
  double seconds;            /* run time recorded in meta (summed) */
} stress_report;

const char *stress_anomaly_name(int kind);

/* Check one unit directory. Anomalies are described on `log` (the first few
** of each kind; NULL = silent). Returns 0 when clean, 1 when anomalies were
** found, -1 when the unit could not be read (message on stderr). The report
** is zeroed first. */
int stress_check_unit(const char *dir, FILE *log, stress_report *rep);

/* dst += src. */
void stress_report_add(stress_report *dst, const stress_report *src);

/* The summary a person reads at a glance. */
void stress_report_print(FILE *out, const stress_report *rep);

#endif /* SOCHDB_STRESS_CHECKER_H */
