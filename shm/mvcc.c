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

uint64_t mv_resolve(const shm_region *r, const struct mv_version *v)
{
  /* relaxed: a stamp is self-contained (written once, final) */
  uint64_t s = atomic_load_explicit(&v->seq, memory_order_relaxed);
  if (s)
    return s;
  struct shm_txn_entry *e = shm_txn_entry_at(r, txn_ref_slot(v->txn), txn_ref_entry(v->txn));
  uint64_t want = txn_ref_gen(v->txn);
  uint64_t g1 = atomic_load_explicit(&e->gen, memory_order_acquire);
  uint64_t st = atomic_load_explicit(&e->state, memory_order_acquire);
  uint64_t g2 = atomic_load_explicit(&e->gen, memory_order_acquire);
  if (txn_ref_gen(g1) == want && g1 == g2)
    return st == TXN_ABORTED ? MV_ABORTED : st;   /* TXN_PENDING == 0 == pending */
  /* The descriptor moved on, so the stamp is visible now (acquire on gen). */
  return atomic_load_explicit(&v->seq, memory_order_relaxed);
}

static inline const struct mv_version *version_at(const shm_region *r, uint64_t off) { return shm_at(r, off); }

static inline uint64_t chain_head(const shm_region *r, uint64_t node)
{
  const struct sl_node *n = shm_at(r, node);
  /* seq_cst: conflict checks across memtables are a store-then-load
  ** handshake between committers (see txn.c), which needs a total order */
  return atomic_load_explicit(&n->versions, memory_order_seq_cst);
}

const struct mv_version *mv_visible(const shm_region *r, uint64_t node, uint64_t snapshot)
{
  const struct sl_node *n = shm_at(r, node);
  /* acquire: pairs with the installing CAS, so the version's bytes are visible */
  for (uint64_t off = atomic_load_explicit(&n->versions, memory_order_acquire); off;) {
    const struct mv_version *v = version_at(r, off);
    uint64_t s = mv_resolve(r, v);
    if (s != MV_ABORTED && s != 0 && s <= snapshot)
      return v;
    off = v->older;
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
    off = v->older;
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
      uint64_t s = mv_resolve(r, live);
      if (s == MV_ABORTED) {
        off = live->older;
        continue;
      }
      if (s == 0) {
        *other = txn_ref_slot(live->txn);
        return MV_BLOCKED;            /* another transaction is committing this key */
      }
      if (s > snapshot) {
        *other = s;
        return MV_CONFLICT;           /* committed after our snapshot: first committer won */
      }
      break;
    }
    v->older = head;
    /* seq_cst: the install is the "store" half of the cross-memtable
    ** handshake, and it publishes the version's bytes (release included) */
    if (atomic_compare_exchange_strong_explicit(&n->versions, &head, voff, memory_order_seq_cst,
                                                memory_order_seq_cst))
      return MV_INSTALLED;
  }
}
