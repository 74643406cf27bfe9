/*
** testhooks.c — the crash and fault points of the test build (see testhooks.h).
*/
#include "testhooks.h"

#ifdef SOCHDB_TESTING
#include <signal.h>
#include <stdio.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

static char armed[64];
static _Atomic unsigned remaining;

void sochdb_test_crash_at(const char *name, unsigned countdown)
{
  atomic_store(&remaining, 0);
  if (!name)
    return;
  strncpy(armed, name, sizeof armed - 1);
  atomic_store(&remaining, countdown ? countdown : 1);
}

static _Atomic int without_daemon;

void sochdb_test_without_daemon(int on) { atomic_store(&without_daemon, on); }

int sdb_test_without_daemon(void) { return atomic_load_explicit(&without_daemon, memory_order_relaxed); }

static _Atomic uint64_t flush_backlog;

void sochdb_test_flush_backlog(uint64_t bytes) { atomic_store(&flush_backlog, bytes); }

uint64_t sdb_test_flush_backlog(void) { return atomic_load_explicit(&flush_backlog, memory_order_relaxed); }

void sdb_crashpoint(const char *name)
{
  if (atomic_load_explicit(&remaining, memory_order_relaxed) == 0 || strcmp(name, armed) != 0)
    return;
  if (atomic_fetch_sub(&remaining, 1) == 1)
    kill(getpid(), SIGKILL);
}
static char call_name[64];
static void (*call_fn)(void *);
static void *call_arg;
static _Atomic int call_armed;

void sochdb_test_call_at(const char *name, void (*fn)(void *arg), void *arg)
{
  atomic_store(&call_armed, 0);
  if (!name || !fn)
    return;
  strncpy(call_name, name, sizeof call_name - 1);
  call_fn = fn;
  call_arg = arg;
  atomic_store_explicit(&call_armed, 1, memory_order_release);   /* publishes the three above */
}

void sdb_callpoint(const char *name)
{
  /* acquire: the name, function and argument armed before it */
  if (!atomic_load_explicit(&call_armed, memory_order_acquire) || strcmp(name, call_name) != 0)
    return;
  if (atomic_exchange(&call_armed, 0))   /* one thread runs it, once */
    call_fn(call_arg);
}

static char fault_name[64];
static int fault_err;
static _Atomic unsigned fault_skip, fault_left;
static _Atomic int fault_said;

void sochdb_test_fault(const char *name, int err, unsigned skip, unsigned count)
{
  atomic_store(&fault_left, 0);
  if (!name)
    return;
  strncpy(fault_name, name, sizeof fault_name - 1);
  fault_err = err;
  atomic_store(&fault_skip, skip);
  atomic_store(&fault_said, 0);
  atomic_store(&fault_left, count);
}

int sdb_fault(const char *name)
{
  if (atomic_load_explicit(&fault_left, memory_order_relaxed) == 0 || strcmp(name, fault_name) != 0)
    return 0;
  unsigned skip = atomic_load(&fault_skip);
  while (skip && !atomic_compare_exchange_weak(&fault_skip, &skip, skip - 1)) {
  }
  if (skip)
    return 0;   /* one of the passes before the faults */
  unsigned left = atomic_load(&fault_left);
  while (left && !atomic_compare_exchange_weak(&fault_left, &left, left - 1)) {
  }
  if (left && !atomic_exchange(&fault_said, 1))   /* on stderr: the daemon's log, for the tests to see */
    fprintf(stderr, "sochdb test: fault point %s fired (errno %d)\n", name, fault_err);
  return left ? (fault_err ? fault_err : -1) : 0;
}
#else
typedef int sochdb_testhooks_unused;   /* ISO C forbids an empty translation unit */
#endif
