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
** Commits at or below the MANIFEST's last_flushed_seq are in SSTables and
** are skipped (the flusher removes the segments that hold only such
** commits), so recovery replays at most about a memtable's worth of log. The
** region's first file list is filled from the MANIFEST here too, so that
** the first transactions see the SSTables before any daemon runs.
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
#include "filelist.h"
#include "manifest.h"
#include "walfmt.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define REPLAY_SLOT UINT32_MAX   /* arena claims made during replay name no slot */

struct replay {
  shm_region *r;
  uint64_t    max_seq;
  uint64_t    flushed;        /* commits at or below it are in SSTables */
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
    arena_note_seq(r, mt, seq);   /* the flusher keeps the log this memtable needs */
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
  if (rec->seq <= rp->flushed)
    return SOCHDB_OK;     /* in SSTables already */
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

static int cmp_keys(const uint8_t *a, uint32_t al, const uint8_t *b, uint32_t bl)
{
  int c = memcmp(a, b, al < bl ? al : bl);
  return c ? c : (al > bl) - (al < bl);
}

struct sortable {
  struct fl_file               f;
  const struct manifest_file *m;
};

static int cmp_sortable(const void *a, const void *b)
{
  const struct sortable *x = a, *y = b;
  if (x->f.level != y->f.level)
    return x->f.level < y->f.level ? -1 : 1;
  if (x->f.level == 0)   /* newest first */
    return (x->f.number < y->f.number) - (x->f.number > y->f.number);
  return cmp_keys(x->m->smallest, x->m->smallest_len, y->m->smallest, y->m->smallest_len);
}

int sdb_state_file_list(const struct manifest_state *st, struct fl_file **out, uint32_t *n)
{
  size_t total = 0;
  for (unsigned l = 0; l < MANIFEST_LEVELS; l++)
    total += st->levels[l].n;
  if (total > FL_MAX_FILES)
    return sdb_fail(SOCHDB_BUSY, "%zu live SSTables; the region lists at most %u", total, FL_MAX_FILES);
  struct sortable *tmp = calloc(total ? total : 1, sizeof *tmp);
  *out = calloc(total ? total : 1, sizeof **out);
  if (!tmp || !*out) {
    free(tmp);
    free(*out);
    return sdb_fail(SOCHDB_NOMEM, "building the file list");
  }
  size_t k = 0;
  for (unsigned l = 0; l < MANIFEST_LEVELS; l++)
    for (size_t i = 0; i < st->levels[l].n; i++, k++) {
      const struct manifest_file *f = &st->levels[l].files[i];
      tmp[k] = (struct sortable){ { f->number, f->size, l, 0 }, f };
    }
  qsort(tmp, total, sizeof *tmp, cmp_sortable);
  for (size_t i = 0; i < total; i++)
    (*out)[i] = tmp[i].f;
  free(tmp);
  *n = (uint32_t)total;
  return SOCHDB_OK;
}

/* A directory without CURRENT is a new database only if it holds no SSTable:
** otherwise its MANIFEST was lost, and guessing would lose data silently. */
static int check_no_tables(const char *dir)
{
  DIR *d = opendir(dir);
  if (!d)
    return sdb_fail_errno("opendir %s", dir);
  struct dirent *e;
  int found = 0;
  while (!found && (e = readdir(d))) {
    size_t len = strlen(e->d_name);
    found = (len > 4 && !strcmp(e->d_name + len - 4, ".sst")) || !strncmp(e->d_name, "MANIFEST-", 9);
  }
  closedir(d);
  return found ? sdb_fail(SOCHDB_CORRUPT, "%s holds SSTables or a MANIFEST but no CURRENT file", dir) : SOCHDB_OK;
}

/* The MANIFEST's state into the new region: its file list, and the seq the
** log replay starts after. */
static int load_files(shm_region *r, const char *dir, uint64_t *flushed)
{
  struct manifest_state st;
  int torn = 0;
  int rc = manifest_read(dir, r->hdr->db_id, &st, &torn);
  *flushed = 0;
  if (rc == SOCHDB_NOTFOUND) {
    manifest_state_free(&st);
    return check_no_tables(dir);
  }
  struct fl_file *files = NULL;
  uint32_t n = 0;
  if (rc == SOCHDB_OK)
    rc = sdb_state_file_list(&st, &files, &n);
  if (rc == SOCHDB_OK) {
    struct fl_list *l = fl_list_at(r, 0);   /* the current one of a fresh region */
    memcpy(l->files, files, n * sizeof *files);
    l->nfiles = n;
    fl_set_totals(r, files, n);
    *flushed = st.last_flushed_seq;
  }
  free(files);
  manifest_state_free(&st);
  return rc;
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
  uint64_t flushed = 0;
  rc = load_files(r, dir, &flushed);
  uint64_t *lsns = NULL;
  size_t n = 0;
  if (rc == SOCHDB_OK)
    rc = wal_list_segments(dir, &lsns, &n);
  if (rc != SOCHDB_OK) {
    if (lock_fd >= 0)
      close(lock_fd);
    return rc;
  }
  struct replay rp = { r, flushed > 1 ? flushed : 1, flushed };   /* seq 1 is the empty database */
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
