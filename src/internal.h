/*
** internal.h — the private definitions behind the public opaque handles:
** struct sochdb (one process's attachment) and struct sochdb_txn.
*/
#ifndef SOCHDB_INTERNAL_H
#define SOCHDB_INTERNAL_H

#include "sochdb.h"

#include "arena.h"
#include "region.h"
#include "slots.h"
#include "wbuf.h"

#include <pthread.h>
#include <stdatomic.h>

struct sochdb {
  shm_region      region;
  uint32_t        slot;               /* our process slot */
  unsigned        busy_timeout_ms;
  uint64_t        max_version_bytes;  /* a version must fit comfortably in one arena */
  _Atomic uint64_t entry_bits[SHM_TXNS_PER_SLOT / 64];  /* transaction entries in use */
  _Atomic int     forked;             /* set in a fork() child: the handle is dead there */
  pthread_mutex_t txns_lock;          /* guards the list of open transactions */
  struct sochdb_txn *txns;
  struct sochdb  *next_handle;        /* process-wide list, for the fork handler */
  char           *dir;
};

struct sochdb_txn {
  sochdb         *db;
  unsigned        flags;
  uint32_t        entry;              /* our transaction entry in the slot */
  uint64_t        snapshot;
  struct mt_view  view;               /* live memtables when the snapshot was taken */
  struct wbuf     writes;
  struct sochdb_txn *prev, *next;     /* in db->txns */
};

/* A handle or transaction used in a fork() child, or NULL. */
int  sdb_check_db(const sochdb *db);
int  sdb_check_txn(const sochdb_txn *t);
static inline struct shm_txn_entry *sdb_txn_entry(const sochdb_txn *t)
{ return shm_txn_entry_at(&t->db->region, t->db->slot, t->entry); }

void sdb_txn_abort_all(sochdb *db);   /* used by sochdb_close */

#endif
