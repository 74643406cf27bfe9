/*
** mvcc.c — resolving and installing versions of a key.
**
** Resolution of an unstamped version reads its descriptor like a seqlock:
** generation, state, generation again. The owner bumps the generation only
** after stamping every version (release), and resets the state only after
** bumping the generation (release), so a reader either reads the state that
** belongs to this version's transaction, or sees a newer generation and then
** finds the version already stamped.
*/
#include "mvcc.h"

#include "skiplist.h"
#include "slots.h"

/* The state of a pending version whose state word is w: from its descriptor. */
static uint64_t resolve_pending(const shm_region *r, const struct mv_version *v, uint64_t w)
{
  uint64_t ref = w & ~MV_PENDING;
  if (txn_ref_slot(ref) >= SHM_MAX_SLOTS || txn_ref_entry(ref) >= SHM_TXNS_PER_SLOT)
    return MV_ABORTED;   /* a damaged word names no descriptor: never follow it out of the section */
  struct shm_txn_entry *e = shm_txn_entry_at(r, txn_ref_slot(ref), txn_ref_entry(ref));
  uint64_t g1 = atomic_load_explicit(&e->gen, memory_order_acquire);
  uint64_t st = atomic_load_explicit(&e->state, memory_order_acquire);
  uint64_t g2 = atomic_load_explicit(&e->gen, memory_order_acquire);
  if (txn_ref_gen(g1) == txn_ref_gen(ref) && g1 == g2)
    return st == TXN_ABORTED ? MV_ABORTED : st;   /* TXN_PENDING == 0 == pending */
  /* The descriptor moved on, so the stamp is visible now (acquire on gen). */
  w = atomic_load_explicit(&v->state, memory_order_relaxed);
  return mv_state_is_pending(w) ? 0 : w;
}

uint64_t mv_resolve(const shm_region *r, const struct mv_version *v)
{
  /* relaxed: a stamp is self-contained (written once, final), and so is
  ** the pending word an intent is created with */
  uint64_t w = atomic_load_explicit(&v->state, memory_order_relaxed);
  return mv_state_is_pending(w) ? resolve_pending(r, v, w) : w;
}

static inline const struct mv_version *version_at(const shm_region *r, uint64_t off) { return shm_at(r, off); }

static inline uint64_t older_of(const shm_region *r, const struct mv_version *v) { return shm_ref_off(r, v->older); }

static inline uint64_t chain_head(const shm_region *r, uint64_t node)
{
  const struct sl_node *n = shm_at(r, node);
  /* seq_cst: conflict checks across memtables are a store-then-load
  ** handshake between committers (see txn.c), which needs a total order */
  return shm_ref_off(r, atomic_load_explicit(&n->versions, memory_order_seq_cst));
}

const struct mv_version *mv_visible(const shm_region *r, uint64_t node, uint64_t snapshot)
{
  for (uint64_t off = sl_versions(r, shm_at(r, node)); off;) {
    const struct mv_version *v = version_at(r, off);
    uint64_t s = mv_resolve(r, v);
    if (s != MV_ABORTED && s != 0 && s <= snapshot)
      return v;
    off = older_of(r, v);
  }
  return NULL;
}

const struct mv_version *mv_newest_live(const shm_region *r, uint64_t node, uint64_t *state)
{
  for (uint64_t off = chain_head(r, node); off;) {
    const struct mv_version *v = version_at(r, off);
    uint64_t s = mv_resolve(r, v);
    if (s != MV_ABORTED) {
      *state = s;
      return v;
    }
    off = older_of(r, v);
  }
  return NULL;
}

enum mv_install_result mv_install(shm_region *r, uint64_t node, uint64_t voff, uint64_t snapshot,
                                  uint64_t *other)
{
  struct sl_node *n = shm_at(r, node);
  struct mv_version *v = shm_at(r, voff);
  for (;;) {
    uint64_t head = chain_head(r, node);
    for (uint64_t off = head; off;) {
      const struct mv_version *live = version_at(r, off);
      uint64_t w = atomic_load_explicit(&live->state, memory_order_relaxed);   /* as in mv_resolve */
      uint64_t s = mv_state_is_pending(w) ? resolve_pending(r, live, w) : w;
      if (s == MV_ABORTED) {
        off = older_of(r, live);
        continue;
      }
      if (s == 0) {
        *other = txn_ref_slot(w & ~MV_PENDING);
        return MV_BLOCKED;            /* another transaction is committing this key */
      }
      if (s > snapshot) {
        *other = s;
        return MV_CONFLICT;           /* committed after our snapshot: first committer won */
      }
      break;
    }
    shm_ref expected = shm_off_ref(r, head);
    v->older = expected;
    /* seq_cst: the install is the "store" half of the cross-memtable
    ** handshake, and it publishes the version's bytes (release included) */
    if (atomic_compare_exchange_strong_explicit(&n->versions, &expected, shm_off_ref(r, voff), memory_order_seq_cst,
                                                memory_order_seq_cst))
      return MV_INSTALLED;
  }
}
