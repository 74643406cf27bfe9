/*
** threadrand.h — a per-thread xorshift64 generator, for the choices that
** must look random but need no quality: a skiplist node's height, whether
** the block cache admits a block. Each thread seeds its own state on first
** use from its pid, the clock and the state's address, so threads and
** forked processes draw different sequences; no state is shared, so a draw
** costs a few instructions and no cache line another CPU writes. A child
** forked after its parent drew goes on with the parent's sequence: these
** choices need not differ between processes.
*/
#ifndef SOCHDB_SHM_THREADRAND_H
#define SOCHDB_SHM_THREADRAND_H

#include <stdint.h>
#include <time.h>
#include <unistd.h>

static inline uint64_t shm_thread_random(void)
{
  static _Thread_local uint64_t x;
  if (!x) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    x = ((uint64_t)getpid() << 32) ^ (uint64_t)ts.tv_nsec ^ (uint64_t)(uintptr_t)&x;
    x |= 1;
  }
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return x;
}

#endif
