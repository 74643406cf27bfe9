/*
** seqring.h — the commit sequencer: hands out commit sequence numbers and
** publishes commits strictly in sequence order, without a lock.
**
** A committer claims sequence s by CAS-ing ring[s % N] from "s-N decided" to
** "s claimed by descriptor d", then helps next_seq forward. Once its
** descriptor is decided (committed or aborted) it marks the entry decided,
** and anyone advances published_seq over every consecutive decided entry.
** Because the claim names its descriptor, a commit whose process died between
** claiming and deciding is found by whoever is stuck behind it, and the
** reaper decides it (aborted) for the dead process: nobody waits forever.
**
** Entry word: [ 46-bit sequence tag | 16-bit descriptor id | 2-bit state ].
*/
#ifndef SOCHDB_SHM_SEQRING_H
#define SOCHDB_SHM_SEQRING_H

#include "region.h"

#define SEQRING_SIZE   4096u          /* entries; more in-flight commits than this wait */
#define SHM_FIRST_SEQ  2u             /* seq 1 = the empty database; states 0/1 are TXN_* */

size_t   seqring_section_bytes(void);
void     seqring_init(shm_region *r, uint64_t published);

/* Descriptor ids: slot * SHM_TXNS_PER_SLOT + entry. */
static inline uint32_t seqring_did(uint32_t slot, uint32_t entry) { return slot * 128u + entry; }

uint64_t seqring_claim(shm_region *r, uint32_t my_slot, uint32_t did);
void     seqring_decide(shm_region *r, uint64_t seq, uint32_t did);
/* Wait until published_seq >= seq, helping and reaping what blocks it. */
void     seqring_wait_published(shm_region *r, uint32_t my_slot, uint64_t seq);
/* Advance publication as far as it goes now, reaping the process of a claimed
** entry that blocks it if that process is dead. Never waits. */
void     seqring_help(shm_region *r, uint32_t my_slot);
/* For the reaper: decide every claimed entry whose descriptor is in `slot`,
** or is `did`. */
void     seqring_decide_all_of_slot(shm_region *r, uint32_t slot);
void     seqring_decide_all_of(shm_region *r, uint32_t did);

static inline uint64_t seqring_published(const shm_region *r)
{
  /* acquire: a snapshot must see every version stamped before it was published */
  return atomic_load_explicit(&r->hdr->published_seq, memory_order_acquire);
}

#endif
