/*
** recovery.c — rebuilding a lost region from the directory: replay every WAL
** segment, in LSN order, into the fresh region's memtables.
**
** It runs in whichever process creates the region (under the region's
** creation flock, before the magic is published), so no transaction ever
** sees a half-replayed region, and a replayer killed half-way leaves a region
** without magic that the next opener replays again. Replayed versions are
** stamped with their original commit sequence; the sequencer and the
** durable sequence resume after the last one.
**
** Only the last segment may end in a torn tail (an interrupted group that was
** never acknowledged); the daemon cuts it off before appending. A segment
** whose first LSN does not continue the previous one, or damage before an
** intact group, is SOCHDB_CORRUPT: recovery never skips data silently.
*/
#include "internal.h"

#include "arena.h"
#include "durable.h"
#include "error.h"
#include "mvcc.h"
#include "seqring.h"
#include "skiplist.h"
#include "walfmt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define REPLAY_SLOT UINT32_MAX   /* arena claims made during replay name no slot */

struct replay {
  shm_region *r;
  uint64_t    max_seq;
};

static int replay_op(struct replay *rp, uint64_t seq, const struct wal_op *op)
{
  shm_region *r = rp->r;
  for (int attempt = 0; attempt < 2; attempt++) {
    uint32_t mt = arena_active(r);
    uint64_t node = sl_find_or_insert(r, mt, op->key, op->klen);
    uint64_t voff = node ? arena_alloc(r, mt, mv_version_bytes(op->vlen)) : 0;
    if (!voff) {
      if (arena_rotate(r, REPLAY_SLOT, mt) != SOCHDB_OK)
        break;
      continue;
    }
    struct mv_version *v = shm_at(r, voff);
    struct sl_node *n = shm_at(r, node);
    v->older = atomic_load_explicit(&n->versions, memory_order_relaxed);
    atomic_init(&v->seq, seq);
    v->txn = 0;
    atomic_init(&v->txn_next, 0);
    v->node = node;
    v->vlen = op->vlen;
    v->flags = op->kind == WAL_DEL ? MV_TOMBSTONE : 0;
    memcpy(v->value, op->val, op->vlen);
    /* relaxed: nobody else can see the region before its magic (release) */
    atomic_store_explicit(&n->versions, voff, memory_order_relaxed);
    return SOCHDB_OK;
  }
  return sdb_fail(SOCHDB_BUSY, "the region is too small to replay the WAL (commit %llu does not fit); "
                  "open with a larger region_bytes", (unsigned long long)seq);
}

static int replay_record(void *ctx, const struct wal_record *rec)
{
  struct replay *rp = ctx;
  if (rec->type != WAL_COMMIT)
    return SOCHDB_OK;
  if (rec->seq <= rp->max_seq)
    return sdb_fail(SOCHDB_CORRUPT, "WAL commit %llu at LSN %llu is not after commit %llu",
                    (unsigned long long)rec->seq, (unsigned long long)rec->lsn, (unsigned long long)rp->max_seq);
  size_t pos = 0;
  struct wal_op op;
  while (wal_op_next(rec, &pos, &op)) {
    int rc = replay_op(rp, rec->seq, &op);
    if (rc != SOCHDB_OK)
      return rc;
  }
  rp->max_seq = rec->seq;
  return SOCHDB_OK;
}

int sdb_replay_wal(shm_region *r, void *dir_arg)
{
  const char *dir = dir_arg;
  /* A daemon takes DIR/LOCK only once attached to a region, and we hold the
  ** new region's creation lock: so a lock holder now serves an older region
  ** (removed or stale) and may still be writing the log. We take the lock
  ** ourselves for the whole replay: the log is final while we read it, and a
  ** daemon of the old region that gets the lock afterwards finds its region
  ** replaced and leaves. */
  int lock_fd;
  int rc = sdb_daemon_lock_out(dir, &lock_fd);
  if (rc != SOCHDB_OK)
    return rc;
  uint64_t *lsns;
  size_t n;
  rc = wal_list_segments(dir, &lsns, &n);
  if (rc != SOCHDB_OK)
    return rc;
  struct replay rp = { r, 1 };   /* seq 1 is the empty database */
  uint64_t expect_lsn = n ? lsns[0] : 0;
  for (size_t i = 0; i < n && rc == SOCHDB_OK; i++) {
    char path[4300];
    wal_segment_path(path, sizeof path, dir, lsns[i]);
    struct wal_scan_result res;
    rc = wal_scan_file(path, r->hdr->db_id, replay_record, &rp, &res);
    if (rc != SOCHDB_OK)
      break;
    if (res.first_lsn != expect_lsn)
      rc = sdb_fail(SOCHDB_CORRUPT, "WAL segment %s starts at LSN %llu; the previous one ended at %llu",
                    path, (unsigned long long)res.first_lsn, (unsigned long long)expect_lsn);
    else if (res.torn_bytes && i + 1 < n)
      rc = sdb_fail(SOCHDB_CORRUPT, "WAL segment %s has %llu damaged bytes at offset %llu but is not the last",
                    path, (unsigned long long)res.torn_bytes, (unsigned long long)res.end_offset);
    expect_lsn = res.next_lsn;
  }
  free(lsns);
  if (lock_fd >= 0)
    close(lock_fd);
  if (rc != SOCHDB_OK)
    return rc;
  seqring_init(r, rp.max_seq);
  durable_init(r, rp.max_seq);
  return SOCHDB_OK;
}
