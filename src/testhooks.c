/*
** testhooks.c — the crash points of the test build (see testhooks.h).
*/
#include "testhooks.h"

#ifdef SOCHDB_TESTING
#include <signal.h>
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

void sdb_crashpoint(const char *name)
{
  if (atomic_load_explicit(&remaining, memory_order_relaxed) == 0 || strcmp(name, armed) != 0)
    return;
  if (atomic_fetch_sub(&remaining, 1) == 1)
    kill(getpid(), SIGKILL);
}
#else
typedef int sochdb_testhooks_unused;   /* ISO C forbids an empty translation unit */
#endif
