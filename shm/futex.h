/*
** futex.h — the futex(2) calls on 32-bit words of the shared region, by
** which one process sleeps until another changes a word: a SYNC committer
** until its group is durable, and the daemon's threads until there is work
** (durable.c; the flusher and compactor loops of daemon/sochdbd.c).
**
** Every word is process-shared (no FUTEX_PRIVATE_FLAG): waiter and waker are
** different processes mapping the same page. A waiter reads the word, checks
** its condition, and sleeps only while the word still holds what it read; a
** waker changes the word (or the state the condition reads, then the word)
** before it wakes. So a change between the check and the sleep is never lost:
** the sleep fails at once (EAGAIN). A wake that changes no word can come
** before the sleep and be lost: whoever sends one sends it again until it
** has what it wants (a writer short of memtable room, every millisecond; the
** daemon stopping its threads, until they have ended).
*/
#ifndef SOCHDB_SHM_FUTEX_H
#define SOCHDB_SHM_FUTEX_H

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static inline long shm_futex(_Atomic uint32_t *word, int op, uint32_t val, const struct timespec *timeout,
                             uint32_t bits)
{
  return syscall(SYS_futex, (uint32_t *)word, op, val, timeout, NULL, bits);
}

/* Wake every process sleeping on word. */
static inline void shm_futex_wake_all(_Atomic uint32_t *word) { shm_futex(word, FUTEX_WAKE, INT_MAX, NULL, 0); }

/* Sleep while *word == seen, at most ms. 1 if woken or the word had moved
** (something happened), 0 if the time ran out or a signal came. Where the
** system refuses the futex, a plain sleep of ms: a caller that loops on it
** polls, but never spins. */
static inline int shm_futex_wait_ms(_Atomic uint32_t *word, uint32_t seen, unsigned ms)
{
  struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
  if (shm_futex(word, FUTEX_WAIT, seen, &ts, 0) == 0 || errno == EAGAIN)
    return 1;
  if (errno != ETIMEDOUT && errno != EINTR)
    nanosleep(&ts, NULL);
  return 0;
}

#endif
