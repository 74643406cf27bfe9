/*
** error.h — internal error reporting: every failure path returns a public
** SOCHDB_* code and records a detailed message for sochdb_last_error().
*/
#ifndef SOCHDB_ERROR_H
#define SOCHDB_ERROR_H

#include "sochdb.h"

/* Record a printf-style detail for this thread and return `code` unchanged,
** so that call sites read `return sdb_fail(SOCHDB_INVALID, "key is %zu bytes", n);`. */
int sdb_fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Same, for a failed system call: appends strerror(errno) and keeps errno. */
int sdb_fail_errno(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Put a printf-style prefix and ": " before the detail recorded last, and
** return `code`: `return sdb_fail_prefix(rc, "SSTable %06llu", n);`. (Not
** sdb_fail(rc, "...: %s", sochdb_last_error()): that formats the buffer
** into itself, which garbles it.) */
int sdb_fail_prefix(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Forget the detail (tests: so that a detail seen after a call is that call's). */
void sdb_clear_error(void);

/* A public call that succeeds leaves sochdb_last_error() unchanged (sochdb.h),
** though steps inside it may fail on the way (a new database has no CURRENT):
** such a call saves the detail first and puts it back when it succeeds. */
#define SDB_ERROR_DETAIL_BYTES 512
void sdb_save_error(char saved[SDB_ERROR_DETAIL_BYTES]);
void sdb_restore_error(const char saved[SDB_ERROR_DETAIL_BYTES]);

/* A failure that ends a walk for good (an iterator's, a table scan's): its
** cursors have moved past the damage, so a call after the error would read
** on from there and end as if the range were complete, the rows behind the
** damage silently missing. Zeroed: no failure. */
struct sdb_sticky_error {
  int  code;
  char detail[SDB_ERROR_DETAIL_BYTES];
};
/* The failure recorded (with its detail set again), or SOCHDB_OK. Inline,
** as is sdb_sticky_note's test: an iterator asks on every key. */
int sdb_sticky_report(const struct sdb_sticky_error *e);
static inline int sdb_sticky_get(const struct sdb_sticky_error *e)
{
  return e->code ? sdb_sticky_report(e) : SOCHDB_OK;
}
/* sdb_sticky_note: record rc if it ends the walk (anything but OK, NOTFOUND
** and INVALID: a refused call leaves the walk as it was); returns rc.
** sdb_sticky_record stores it with this thread's detail. */
void sdb_sticky_record(struct sdb_sticky_error *e, int rc);
static inline int sdb_sticky_note(struct sdb_sticky_error *e, int rc)
{
  if (rc != SOCHDB_OK && rc != SOCHDB_NOTFOUND && rc != SOCHDB_INVALID)
    sdb_sticky_record(e, rc);
  return rc;
}

#endif
