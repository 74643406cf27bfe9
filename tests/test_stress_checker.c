/*
** test_stress_checker.c — the stress suite's snapshot-isolation checker
** (stress/checker.c) on hand-made histories: a clean history passes, and
** each planted anomaly is caught — a lost update, a read of an aborted
** transaction, a fractured read, a read from the future, a broken bank sum,
** and more (stale, intermediate and non-repeatable reads, a register that
** disagrees with its event list, lost and half-present commits after a
** crash, a read-skew cycle); write skew is counted but allowed, and so is a
** not-yet-durable commit lost with a removed region; and the same checks on
** the table workload's pseudo-keys (row lists, the row bank, row registers).
**
** A unit is written to a fresh directory (meta, init.state, two worker
** histories, final.state; format in stress/checker.h) and checked. The base
** history: transaction 1.1 appends to two lists, 1.2 moves 10 between the
** two accounts, 1.3 puts register 0 (and logs it in its event list), and the
** read-only 2.1 sees all of it consistently.
*/
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "checker.h"
#include "testutil.h"

#define META      "accounts=2\nbalance=100\nregion_removed=0\n"
#define META_LOST "accounts=2\nbalance=100\nregion_removed=1\n"

#define INIT \
  "T 0.2 state r 1 2 3\nS B/ B0\nR B/0000 100:0:0:0.1\nR B/0001 100:0:0:0.1\nZ\nI 0.2\nO 0.2 ok 4\n"

/* 1.1: both lists; its mode (s/a) and outcome line are parameters. */
#define T11(mode, outcome) \
  "T 1.1 rmw " mode " 10 11 20\nR L/0000/000000 -\nR L/0001/000000 -\n" \
  "W L/0000/000000 0:0:0:1.1\nW L/0001/000000 0:0:0:1.1\nI 1.1\n" outcome
#define T12 \
  "T 1.2 transfer a 40 41 50\nR B/0000 100:0:0:0.1\nR B/0001 100:0:0:0.1\n" \
  "W B/0000 90:0:0:1.2\nW B/0001 110:0:0:1.2\nI 1.2\nO 1.2 ok 60\n"
#define T13(mode) \
  "T 1.3 reg " mode " 70 71 80\nR E/0000/000000 -\nR D/0000 -\nW D/0000 0:0:0:1.3\n" \
  "W E/0000/000000 0:0:0:1.3\nI 1.3\nO 1.3 ok 90\n"
#define HIST1 "H 1\n" T11("s", "O 1.1 ok 30\n") T12 T13("s")

/* 2.1 reads everything; its begin times and the two list reads are parameters. */
#define T21(b0, b1, l0, l1) \
  "T 2.1 read r " b0 " " b1 " 110\nR L/0000/000000 " l0 "\nR L/0001/000000 " l1 "\n" \
  "R E/0000/000000 0:0:0:1.3\nR D/0000 0:0:0:1.3\nS B/ B0\nR B/0000 90:0:0:1.2\nR B/0001 110:0:0:1.2\nZ\n" \
  "I 2.1\nO 2.1 ok 111\n"
#define HIST2 "H 2\n" T21("100", "101", "0:0:0:1.1", "0:0:0:1.1")

#define FINAL_STATE(l0, l1) \
  "T 0.3 state r 200 201 210\nS B/ B0\nR B/0000 90:0:0:1.2\nR B/0001 110:0:0:1.2\nZ\n" \
  "S D/ D0\nR D/0000 0:0:0:1.3\nZ\n" \
  "S L/0000/000000 L/0000/~\n" l0 "Z\nS L/0001/000000 L/0001/~\n" l1 "Z\n" \
  "S E/0000/000000 E/0000/~\nR E/0000/000000 0:0:0:1.3\nZ\nI 0.3\nO 0.3 ok 211\n"
/* Only the two lists, for histories without the bank and register transactions. */
#define FINAL_LISTS(l0, l1) \
  "T 0.3 state r 200 201 210\nS L/0000/000000 L/0000/~\n" l0 "Z\nS L/0001/000000 L/0001/~\n" l1 "Z\n" \
  "I 0.3\nO 0.3 ok 211\n"
#define FINAL FINAL_STATE("R L/0000/000000 0:0:0:1.1\n", "R L/0001/000000 0:0:0:1.1\n")

typedef struct unit {
  const char *meta, *init, *h1, *h2, *final;
} unit;

static void write_file(const char *dir, const char *name, const char *text)
{
  char path[4300];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "w");
  cr_assert_not_null(f, "%s", path);
  fputs(text, f);
  fclose(f);
}

/* Write u to a fresh directory and check it; returns the report. */
static stress_report check(const unit *u)
{
  char *dir = tu_tmpdir();
  cr_assert_not_null(dir);
  write_file(dir, "meta", u->meta ? u->meta : META);
  write_file(dir, "init.state", u->init ? u->init : INIT);
  write_file(dir, "hist-1.log", u->h1 ? u->h1 : HIST1);
  write_file(dir, "hist-2.log", u->h2 ? u->h2 : HIST2);
  write_file(dir, "final.state", u->final ? u->final : FINAL);
  stress_report r;
  int rc = stress_check_unit(dir, stderr, &r);
  tu_rmrf(dir);
  free(dir);
  cr_assert_geq(rc, 0, "the unit could not be read");
  cr_assert_eq(rc, r.anomalies_total ? 1 : 0);
  return r;
}

/* Exactly the anomalies of kind `kind` (at least one), nothing else unless `others`. */
static void expect(const unit *u, int kind, int others)
{
  stress_report r = check(u);
  cr_assert_gt(r.anomalies[kind], 0, "the planted %s was not found", stress_anomaly_name(kind));
  if (!others)
    cr_assert_eq(r.anomalies_total, r.anomalies[kind], "the planted %s came with %llu other anomalies",
                 stress_anomaly_name(kind), (unsigned long long)(r.anomalies_total - r.anomalies[kind]));
}

Test(stress_checker, clean_history_passes)
{
  unit u = { 0 };
  stress_report r = check(&u);
  cr_assert_eq(r.anomalies_total, 0);
  cr_assert_eq(r.committed, 3);
  cr_assert_eq(r.readonly, 1);
  cr_assert_eq(r.histories, 2);
  cr_assert_eq(r.bank_snapshots, 3, "1.2 (two accounts of two), 2.1 and final.state read every account");
  cr_assert_eq(r.commits_verified, 2, "1.1 and 1.3 append to lists");
}

Test(stress_checker, lost_update)
{
  /* 2.2 read list 0 empty like 1.1 did, and overwrote 1.1's append. */
  unit u = { .h2 = "T 2.2 rmw s 12 13 22\nR L/0000/000000 -\nW L/0000/000000 0:0:0:2.2\nI 2.2\nO 2.2 ok 31\n",
             .final = FINAL_STATE("R L/0000/000000 0:0:0:2.2\n", "R L/0001/000000 0:0:0:1.1\n") };
  expect(&u, CK_LOST_UPDATE, 1);
}

Test(stress_checker, aborted_read)
{
  /* 1.1's commit conflicted, yet 2.1 saw it. */
  unit u = { .h1 = "H 1\n" T11("s", "O 1.1 conflict 30\n") T12 T13("s") };
  expect(&u, CK_ABORTED_READ, 1);
}

Test(stress_checker, read_of_a_transaction_that_never_committed)
{
  /* 1.1's intent is torn: its commit was never called. */
  unit u = { .h1 = "H 1\n" T12 T13("s") "T 1.1 rmw s 10 11 20\nR L/0000/000000 -\nW L/00" };
  expect(&u, CK_ABORTED_READ, 1);
}

Test(stress_checker, fractured_read)
{
  unit u = { .h2 = "H 2\n" T21("100", "101", "0:0:0:1.1", "-") };
  expect(&u, CK_FRACTURED_READ, 1);
}

Test(stress_checker, read_from_the_future)
{
  /* 2.1's snapshot was taken at 16; 1.1 began committing at 20. */
  unit u = { .h2 = "H 2\nT 2.1 read r 15 16 110\nR L/0000/000000 0:0:0:1.1\nI 2.1\nO 2.1 ok 111\n" };
  expect(&u, CK_FUTURE_READ, 0);
}

Test(stress_checker, broken_bank_sum)
{
  unit u = { .h2 = "H 2\nT 2.1 audit r 100 101 110\nR B/0000 90:0:0:1.2\nR B/0001 120:0:0:1.2\nI 2.1\nO 2.1 ok 111\n" };
  expect(&u, CK_BANK_SUM, 0);
}

Test(stress_checker, stale_read)
{
  /* 1.1 was acknowledged at 30; 2.1 began at 100 and missed it in both lists. */
  unit u = { .h2 = "H 2\n" T21("100", "101", "-", "-") };
  expect(&u, CK_STALE_READ, 0);
}

Test(stress_checker, intermediate_read)
{
  unit u = { .h2 = "H 2\n" T21("100", "101", "0:0:1:1.1", "0:0:0:1.1") };
  expect(&u, CK_INTERMEDIATE_READ, 1);
}

Test(stress_checker, non_repeatable_read)
{
  unit u = { .h2 = "H 2\nT 2.1 long r 100 101 110\nR L/0000/000000 0:0:0:1.1\nR L/0000/000000 -\nI 2.1\n"
                   "O 2.1 ok 111\n" };
  expect(&u, CK_NONREPEATABLE, 0);
}

Test(stress_checker, register_disagrees_with_its_event_list)
{
  unit u = { .h2 = "H 2\nT 2.1 read r 100 101 110\nR E/0000/000000 0:0:0:1.3\nR D/0000 -\nI 2.1\nO 2.1 ok 111\n" };
  expect(&u, CK_REGISTER, 0);
}

Test(stress_checker, acknowledged_commit_lost)
{
  /* final.state (region kept) lacks 1.1, SYNC-acknowledged. */
  unit u = { .h2 = "H 2\n", .final = FINAL_STATE("", "") };
  expect(&u, CK_LOST_COMMIT, 0);
}

Test(stress_checker, half_present_after_a_crash)
{
  /* 1.1 was killed mid-commit: unknown outcome; it is in one of its lists only. */
  unit u = { .h1 = "H 1\n" T11("s", "") T12 T13("s"), .h2 = "H 2\n",
             .final = FINAL_STATE("R L/0000/000000 0:0:0:1.1\n", "") };
  expect(&u, CK_HALF_PRESENT, 0);
}

Test(stress_checker, removed_region_may_lose_only_what_was_not_durable)
{
  /* Everything ASYNC, and 1.1 returned (85) after 1.3, which survives, began
  ** its commit (80): 1.1 may vanish with the region. */
  unit lost = { .meta = META_LOST, .h1 = "H 1\n" T11("a", "O 1.1 ok 85\n") T12 T13("a"), .h2 = "H 2\n",
                .final = FINAL_STATE("", "") };
  stress_report r = check(&lost);
  cr_assert_eq(r.anomalies_total, 0);
  cr_assert_eq(r.nondurable_lost, 1);
  /* 1.1 returned (30) before 1.3 began its commit (80): the log holds 1.3,
  ** so it holds 1.1 too, durable or not. */
  unit gap = lost;
  gap.h1 = "H 1\n" T11("a", "O 1.1 ok 30\n") T12 T13("a");
  expect(&gap, CK_LOST_COMMIT, 0);
  /* 1.3 was SYNC and began committing (80) after 1.1 returned (30): 1.1 was durable. */
  unit durable = lost;
  durable.h1 = "H 1\n" T11("a", "O 1.1 ok 30\n") T12 T13("s");
  expect(&durable, CK_LOST_COMMIT, 0);
}

/* Read skew as a cycle: 3.1 misses 1.1 in list 0 but sees 2.2, which read 1.1. */
#define SKEW_H1 "T 1.1 rmw s 10 11 20\nR L/0000/000000 -\nW L/0000/000000 0:0:0:1.1\nI 1.1\nO 1.1 ok 100\n"
#define SKEW_H2 "T 2.2 rmw s 25 26 30\nR L/0000/000000 0:0:0:1.1\nR L/0001/000000 -\n" \
                "W L/0001/000000 0:0:0:2.2\nI 2.2\nO 2.2 ok 40\n" \
                "T 3.1 read r 35 36 37\nR L/0000/000000 -\nR L/0001/000000 0:0:0:2.2\nI 3.1\nO 3.1 ok 38\n"

Test(stress_checker, read_skew_cycle)
{
  unit u = { .h1 = SKEW_H1, .h2 = SKEW_H2,
             .final = FINAL_LISTS("R L/0000/000000 0:0:0:1.1\n", "R L/0001/000000 0:0:0:2.2\n") };
  expect(&u, CK_CYCLE_GSINGLE, 0);
}

Test(stress_checker, write_skew_is_counted_not_failed)
{
  /* 1.1 read list 0 and wrote list 1; 2.2 read list 1 and wrote list 0; concurrently. */
  unit u = { .h1 = "T 1.1 rmw s 10 11 20\nR L/0000/000000 -\nR L/0001/000000 -\nW L/0001/000000 0:0:0:1.1\n"
                   "I 1.1\nO 1.1 ok 30\n",
             .h2 = "T 2.2 rmw s 12 13 22\nR L/0001/000000 -\nR L/0000/000000 -\nW L/0000/000000 0:0:0:2.2\n"
                   "I 2.2\nO 2.2 ok 32\n",
             .final = FINAL_LISTS("R L/0000/000000 0:0:0:2.2\n", "R L/0001/000000 0:0:0:1.1\n") };
  stress_report r = check(&u);
  cr_assert_eq(r.anomalies_total, 0);
  cr_assert_eq(r.write_skew, 1);
}

/* The table workload: rows of the columnar table logged under pseudo-keys —
** "T/iiii/gggggg" list chains (checked as list keys) and "U/aaaa" the row
** bank (its own bank family: row_accounts x row_balance). 1.4 appends to
** table chain 0 and key-value list 2 in one transaction; 1.5 moves 10
** between the row accounts; 2.1 audits them by a projected {id, bal} scan
** (no ids) and reads both lists. */
#define META_T META "row_accounts=2\nrow_balance=100\n"
#define INIT_T \
  "T 0.2 state r 1 2 3\nS B/ B0\nR B/0000 100:0:0:0.1\nR B/0001 100:0:0:0.1\nZ\n" \
  "S U/ U0\nR U/0000 100:0:0:0.1\nR U/0001 100:0:0:0.1\nZ\nI 0.2\nO 0.2 ok 4\n"
#define HIST1_T \
  "H 1\nT 1.4 trmw s 10 11 20\nS T/0000/000000 T/0000/~\nZ\nR L/0002/000000 -\n" \
  "W T/0000/000000 0:0:0:1.4\nW L/0002/000000 0:0:0:1.4\nI 1.4\nO 1.4 ok 30\n" \
  "T 1.5 ttransfer a 40 41 50\nR U/0000 100:0:0:0.1\nR U/0001 100:0:0:0.1\n" \
  "W U/0000 90:0:0:1.5\nW U/0001 110:0:0:1.5\nI 1.5\nO 1.5 ok 60\n"
#define T21_T(u1, trow, lrow) \
  "H 2\nT 2.1 taudit r 100 101 110\nS U/ U0\nR U/0000 90:0:0:\nR U/0001 " u1 "\nZ\n" \
  "S T/0000/000000 T/0000/~\n" trow "Z\n" lrow "I 2.1\nO 2.1 ok 111\n"
#define HIST2_T T21_T("110:0:0:", "R T/0000/000000 0:0:0:1.4\n", "R L/0002/000000 0:0:0:1.4\n")
#define FINAL_T \
  "T 0.3 state r 200 201 210\nS B/ B0\nR B/0000 100:0:0:0.1\nR B/0001 100:0:0:0.1\nZ\n" \
  "S T/ T0\nR T/0000/000000 0:0:0:1.4\nZ\nS U/ U0\nR U/0000 90:0:0:1.5\nR U/0001 110:0:0:1.5\nZ\n" \
  "S L/0002/000000 L/0002/~\nR L/0002/000000 0:0:0:1.4\nZ\nI 0.3\nO 0.3 ok 211\n"

static unit table_unit(const char *h1, const char *h2, const char *final)
{
  unit u = { .meta = META_T, .init = INIT_T, .h1 = h1 ? h1 : HIST1_T, .h2 = h2 ? h2 : HIST2_T,
             .final = final ? final : FINAL_T };
  return u;
}

Test(stress_checker, table_rows_clean_history_passes)
{
  unit u = table_unit(NULL, NULL, NULL);
  stress_report r = check(&u);
  cr_assert_eq(r.anomalies_total, 0);
  cr_assert_eq(r.committed, 2);
  cr_assert_eq(r.bank_snapshots, 4, "final.state (both banks), 1.5 and 2.1 (the row bank)");
  cr_assert_eq(r.commits_verified, 1, "1.4 appends to a row list and a key-value list");
}

Test(stress_checker, table_row_bank_sum)
{
  unit u = table_unit(NULL, T21_T("120:0:0:", "R T/0000/000000 0:0:0:1.4\n", "R L/0002/000000 0:0:0:1.4\n"), NULL);
  expect(&u, CK_BANK_SUM, 0);
}

Test(stress_checker, table_row_and_key_fractured)
{
  /* 2.1 saw 1.4's key-value append but its scan missed 1.4's row append. */
  unit u = table_unit(NULL, T21_T("110:0:0:", "", "R L/0002/000000 0:0:0:1.4\n"), NULL);
  expect(&u, CK_FRACTURED_READ, 1);
}

Test(stress_checker, table_scan_disagrees_with_get)
{
  /* 2.1's scan did not return the row that a get in the same snapshot reads. */
  unit u = table_unit(NULL, T21_T("110:0:0:", "", "R T/0000/000000 0:0:0:1.4\nR L/0002/000000 0:0:0:1.4\n"), NULL);
  expect(&u, CK_NONREPEATABLE, 1);
}

Test(stress_checker, table_row_lost_update)
{
  /* 2.2 read table chain 0 empty like 1.4 did and overwrote its append. */
  unit u = table_unit(NULL, "H 2\nT 2.2 trmw s 12 13 22\nR T/0000/000000 -\nW T/0000/000000 0:0:0:2.2\nI 2.2\n"
                            "O 2.2 ok 31\n", FINAL_T);
  expect(&u, CK_LOST_UPDATE, 1);
}

/* A row register ("V/r") and its key-value event chain ("F/r/gen"). */
#define HIST1_V \
  "H 1\nT 1.6 treg s 10 11 20\nR F/0000/000000 -\nR V/0000 -\nW V/0000 0:0:0:1.6\n" \
  "W F/0000/000000 0:0:0:1.6\nI 1.6\nO 1.6 ok 30\n"
#define HIST2_V(v) "H 2\nT 2.1 tscan r 100 101 110\nR F/0000/000000 0:0:0:1.6\nR V/0000 " v "\nI 2.1\nO 2.1 ok 111\n"
#define FINAL_V \
  "T 0.3 state r 200 201 210\nS V/ V0\nR V/0000 0:0:0:1.6\nZ\n" \
  "S F/0000/000000 F/0000/~\nR F/0000/000000 0:0:0:1.6\nZ\nI 0.3\nO 0.3 ok 211\n"

Test(stress_checker, table_row_register)
{
  unit u = table_unit(HIST1_V, HIST2_V("0:0:0:1.6"), FINAL_V);
  stress_report r = check(&u);
  cr_assert_eq(r.anomalies_total, 0);
  cr_assert_eq(r.commits_verified, 1);
  /* 2.1 saw the put in the event chain but the row absent */
  unit bad = table_unit(HIST1_V, HIST2_V("-"), FINAL_V);
  expect(&bad, CK_REGISTER, 0);
}

/* The accounts are held to the lists' rules: final.state's accounts are
** init.state's, without 1.2's transfer. */
#define FINAL_NO_TRANSFER \
  "T 0.3 state r 200 201 210\nS B/ B0\nR B/0000 100:0:0:0.1\nR B/0001 100:0:0:0.1\nZ\n" \
  "S D/ D0\nR D/0000 0:0:0:1.3\nZ\n" \
  "S L/0000/000000 L/0000/~\nR L/0000/000000 0:0:0:1.1\nZ\nS L/0001/000000 L/0001/~\nR L/0001/000000 0:0:0:1.1\nZ\n" \
  "S E/0000/000000 E/0000/~\nR E/0000/000000 0:0:0:1.3\nZ\nI 0.3\nO 0.3 ok 211\n"
#define T12_UNKNOWN \
  "T 1.2 transfer a 40 41 50\nR B/0000 100:0:0:0.1\nR B/0001 100:0:0:0.1\n" \
  "W B/0000 90:0:0:1.2\nW B/0001 110:0:0:1.2\nI 1.2\n"

Test(stress_checker, a_transfer_older_than_a_surviving_commit_is_not_lost_with_the_region)
{
  /* All ASYNC, the region removed: 1.2 returned (60) before 1.3, found in
  ** final.state, began its commit (80); the log holds 1.2 then. */
  unit u = { .meta = META_LOST, .h1 = "H 1\n" T11("a", "O 1.1 ok 30\n") T12 T13("a"), .h2 = "H 2\n",
             .final = FINAL_NO_TRANSFER };
  expect(&u, CK_LOST_COMMIT, 0);
}

Test(stress_checker, a_transfer_of_unknown_outcome_that_a_snapshot_saw_is_not_lost)
{
  /* The region kept: 1.2 was killed in its commit, 2.1 saw its transfer,
  ** and final.state has the accounts as before it. */
  unit u = { .h1 = "H 1\n" T11("s", "O 1.1 ok 30\n") T12_UNKNOWN T13("s"), .final = FINAL_NO_TRANSFER };
  expect(&u, CK_LOST_COMMIT, 0);
}
