/*
** testhooks.h — test-only crash points. In a build with SOCHDB_TESTING a
** test can arm a named point; the countdown-th time the process reaches it,
** the process kills itself with SIGKILL, so crash recovery is tested at exact
** instructions instead of at random. In a normal build CRASHPOINT is nothing.
**
** Fault points, the same way: an I/O call of the daemon (WAL writes and
** fdatasyncs, SSTable writes) asks FAULT(name) first; when armed, it fails
** with the armed errno instead of doing its I/O, `count` times in a row
** after `skip` passes. "wal.short" makes each WAL write write half its bytes
** (a real short write). In a normal build FAULT(name) is 0.
**
** Call points, for races a test must stage between two exact instructions
** of one thread: CALLPOINT(name) runs the function a test armed for it, in
** the thread that reaches it. In a normal build it is nothing.
*/
#ifndef SOCHDB_TESTHOOKS_H
#define SOCHDB_TESTHOOKS_H

#include <stdint.h>

#ifdef SOCHDB_TESTING
/* Arm a crash point: the countdown-th time `name` is reached in this process,
** the process kills itself with SIGKILL. countdown 1 = first time; NULL disarms. */
void sochdb_test_crash_at(const char *name, unsigned countdown);
void sdb_crashpoint(const char *name);
#define CRASHPOINT(name) sdb_crashpoint(name)
/* Arm fault point `name`: after `skip` passes, the next `count` reach it
** fail with err. NULL disarms. */
void sochdb_test_fault(const char *name, int err, unsigned skip, unsigned count);
int  sdb_fault(const char *name);   /* 0, or the errno to fail with */
#define FAULT(name) sdb_fault(name)
/* Arm call point `name`: the next thread to reach it runs fn(arg), once
** (the point is disarmed first, so fn may pass it again). NULL disarms. */
void sochdb_test_call_at(const char *name, void (*fn)(void *arg), void *arg);
void sdb_callpoint(const char *name);
#define CALLPOINT(name) sdb_callpoint(name)
/* Run without sochdbd: nothing starts one, nothing waits for one to leave.
** For suites that place process slots exactly; they commit SOCHDB_ASYNC. */
void sochdb_test_without_daemon(int on);
int  sdb_test_without_daemon(void);
/* The bytes of full memtables that may wait for their flush before this
** process's writers stall (src/txn.c); 0 restores the default. */
void     sochdb_test_flush_backlog(uint64_t bytes);
uint64_t sdb_test_flush_backlog(void);
#else
#define CRASHPOINT(name) ((void)0)
#define CALLPOINT(name) ((void)0)
#define FAULT(name) 0
#define sdb_test_without_daemon() 0
#define sdb_test_flush_backlog() 0
#endif

#endif
