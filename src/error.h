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

/* Forget the detail (called at the start of public calls that succeed quietly). */
void sdb_clear_error(void);

#endif
