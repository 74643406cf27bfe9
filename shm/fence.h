/*
** fence.h — the seq_cst fence of the store-then-check handshakes between
** processes (epoch.c, durable.c, src/txn.c): each side stores, fences, then
** loads what the other stored, so at least one of them sees the other. A
** seq_cst store alone does not order later acquire-only loads on every
** architecture (POWER, ARMv8.3 RCpc), hence a fence.
**
** ThreadSanitizer does not model fences, and gcc warns about them under
** -fsanitize=thread; the accesses around them are atomics, so TSan reports no
** race either way, and the warning is silenced here, once.
*/
#ifndef SOCHDB_SHM_FENCE_H
#define SOCHDB_SHM_FENCE_H

#include <stdatomic.h>

#if defined(__SANITIZE_THREAD__) && defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wtsan"
#endif
static inline void shm_fence_seq_cst(void) { atomic_thread_fence(memory_order_seq_cst); }
#if defined(__SANITIZE_THREAD__) && defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

#endif
