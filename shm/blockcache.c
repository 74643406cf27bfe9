/*
** blockcache.c — the shared, set-associative CLOCK cache of decompressed
** blocks (see blockcache.h). It owns nothing but the caller's area, laid out
** as offsets from its start:
**
**   [ header 192 B | tier 0's sets | tier 1's sets | pad to 4 KiB | tier 0's data | tier 1's data ]
**
** A tier is a cache of its own for blocks of one size class: a block goes to
** the tier of the smallest entries that hold it (see bc_default_tiers). A
** set is its CLOCK hand and the metadata of its BC_WAYS entries (state,
** tags, length, reference bit), 384 bytes; the entries' data, the tier's
** block_max bytes each, is kept apart so that a lookup reads a few adjacent
** cache lines to scan a set, and formatting touches no data page.
**
** Shared data is only ever touched with atomic operations (data as 8-byte
** words, relaxed): processes race on entries by design, and the seqlock, not
** the individual accesses, decides what a reader may use.
*/
#include "blockcache.h"
#include "testhooks.h"
#include "threadrand.h"

#include <stdatomic.h>
#include <string.h>
#include <xxhash.h>

#define BC_MAGIC       0x3243424244484353ull   /* "SCHDBBC2": size tiers */
#define BC_HEADER      192u
#define BC_DATA_ALIGN  4096u
#define OWNER_MASK     0xffffull
#define VALID_BIT      (1ull << 16)
#define VERSION_SHIFT  17

/* Small entries for the blocks sochdbd writes by default (4 KiB of entries
** and the one that crossed the mark: 4.1-4.2 KiB with 100-byte values),
** which a 16 KiB entry held at a quarter of its size; the rest for blocks of
** big values, up to BC_BLOCK_MAX. Three quarters of the budget to the first. */
const struct bc_tiers bc_default_tiers = { 2, { 4608u, BC_BLOCK_MAX }, { 3, 1 } };

struct bc_tier {
  uint64_t nsets;       /* 0: this size class is not cached */
  uint64_t sets_off;    /* of its set 0, from the area's start */
  uint64_t data_off;    /* of its entry 0's data, from the area's start */
  uint64_t block_max;   /* bytes of one entry's data */
};

struct bc_header {
  uint64_t magic;       /* BC_MAGIC once formatted */
  uint64_t ntiers;
  struct bc_tier tier[BC_MAX_TIERS];
  uint64_t pad[16 - 2 - 4 * BC_MAX_TIERS];
  /* counters on a line of their own */
  _Atomic uint64_t hits, misses, inserts, evictions, too_big;
  uint64_t pad2[3];
};

struct bc_entry {
  _Atomic uint64_t state;             /* [ version | valid | writer ] */
  _Atomic uint64_t file, offset, len;
  _Atomic uint32_t ref;               /* CLOCK reference bit */
  uint32_t         pad;
};

struct bc_set {
  _Alignas(64) _Atomic uint32_t hand; /* CLOCK hand: next way to look at, mod BC_WAYS */
  _Atomic uint32_t backed;            /* 1 once the set's blocks have memory (bc_backing) */
  struct bc_entry way[BC_WAYS];
};

_Static_assert(sizeof(struct bc_header) == BC_HEADER, "header size");
_Static_assert(offsetof(struct bc_header, hits) % 64 == 0, "counters on their own line");
_Static_assert(sizeof(struct bc_set) % 64 == 0, "sets are whole cache lines");

/* ---- state words ------------------------------------------------------------ */

static inline uint32_t st_owner(uint64_t s) { return (uint32_t)(s & OWNER_MASK); }
static inline int      st_valid(uint64_t s) { return (s & VALID_BIT) != 0; }
static inline uint64_t st_version(uint64_t s) { return s >> VERSION_SHIFT; }
static inline uint64_t st_make(uint64_t version, int valid, uint32_t owner)
{
  return (version << VERSION_SHIFT) | (valid ? VALID_BIT : 0) | (owner & OWNER_MASK);
}

/* ---- layout ------------------------------------------------------------------- */

/* Sets of each tier for a budget of `budget` bytes of entries, into nsets. */
static void sets_for_budget(const struct bc_tiers *t, uint64_t budget, uint64_t *nsets)
{
  uint64_t shares = 0;
  for (unsigned i = 0; i < t->n; i++)
    shares += t->share[i];
  for (unsigned i = 0; i < t->n; i++)
    nsets[i] = budget / shares * t->share[i] / ((uint64_t)BC_WAYS * t->block_max[i]);
}

/* The layout of those sets: each tier's offsets into out (if not NULL); the
** area's bytes (0 when no tier has a set: no cache). */
static uint64_t lay_out(const struct bc_tiers *t, const uint64_t *nsets, struct bc_tier *out)
{
  uint64_t meta = BC_HEADER, data = 0, any = 0;
  for (unsigned i = 0; i < t->n; i++)
    meta += nsets[i] * sizeof(struct bc_set);
  uint64_t data_start = (meta + BC_DATA_ALIGN - 1) / BC_DATA_ALIGN * BC_DATA_ALIGN;
  meta = BC_HEADER;
  for (unsigned i = 0; i < t->n; i++) {
    if (out)
      out[i] = (struct bc_tier){ nsets[i], meta, data_start + data, t->block_max[i] };
    meta += nsets[i] * sizeof(struct bc_set);
    data += nsets[i] * BC_WAYS * t->block_max[i];
    any |= nsets[i];
  }
  return any ? data_start + data : 0;
}

static uint64_t area_for_budget(const struct bc_tiers *t, uint64_t budget)
{
  uint64_t nsets[BC_MAX_TIERS];
  sets_for_budget(t, budget, nsets);
  return lay_out(t, nsets, NULL);
}

/* The layout of an area of area_bytes: that of the largest budget whose area
** fits, so that an area sized by bc_area_bytes_of(budget) gets exactly that
** budget's sets (the area grows with the budget, one tier's set at a time),
** and every process derives the same layout from the size alone. Its sets
** into nsets; the area's bytes in use (0: none fits). */
static uint64_t layout_of_area(const struct bc_tiers *t, size_t area_bytes, uint64_t *nsets)
{
  /* Not area_bytes: each tier's share rounds down to whole sets, so an area
  ** can be smaller than its budget (512 KiB: 507904 bytes), and a search up
  ** to area_bytes found fewer sets than the area was sized for. The smallest
  ** budget with a given set count per tier is shares * max over tiers of
  ** ceil(tier's data / share), at most shares * (area_bytes + 1) since each
  ** tier's data fits in the area and a share is at least 1. Capped at 2^62,
  ** far above any area a process can map, so that area_for_budget's sums
  ** (the budget and under 1% of metadata) cannot wrap. */
  uint64_t shares = 0;
  for (unsigned i = 0; i < t->n; i++)
    shares += t->share[i];
  uint64_t lo = 0, hi;
  if (area_bytes >= (1ull << 62) || __builtin_mul_overflow(shares, (uint64_t)area_bytes + 1, &hi) ||
      hi > (1ull << 62))
    hi = 1ull << 62;
  while (lo < hi) {
    uint64_t mid = lo + (hi - lo + 1) / 2;
    if (area_for_budget(t, mid) <= area_bytes)
      lo = mid;
    else
      hi = mid - 1;
  }
  sets_for_budget(t, lo, nsets);
  return lay_out(t, nsets, NULL);
}

size_t bc_area_bytes_of(const struct bc_tiers *t, uint64_t cache_bytes)
{
  return (size_t)area_for_budget(t, cache_bytes);
}

size_t bc_area_bytes(uint64_t cache_bytes) { return bc_area_bytes_of(&bc_default_tiers, cache_bytes); }

size_t bc_meta_bytes_of(const struct bc_tiers *t, size_t area_bytes)
{
  uint64_t nsets[BC_MAX_TIERS];
  struct bc_tier tier[BC_MAX_TIERS];
  if (area_bytes < BC_HEADER || !layout_of_area(t, area_bytes, nsets))
    return area_bytes < BC_HEADER ? area_bytes : BC_HEADER;
  lay_out(t, nsets, tier);
  return (size_t)tier[0].data_off;   /* the data of tier 0 comes first, after every set */
}

size_t bc_meta_bytes(size_t area_bytes) { return bc_meta_bytes_of(&bc_default_tiers, area_bytes); }

/* The formatted header of area, or NULL when the cache is absent or disabled. */
static struct bc_header *header(const void *area)
{
  struct bc_header *h = (struct bc_header *)area;
  return h && h->magic == BC_MAGIC && h->ntiers > 0 ? h : NULL;
}

static struct bc_set *set_at(struct bc_header *h, const struct bc_tier *t, uint64_t i)
{
  return (struct bc_set *)((char *)h + t->sets_off + i * sizeof(struct bc_set));
}

static struct bc_set *set_of(struct bc_header *h, const struct bc_tier *t, uint64_t file, uint64_t offset)
{
  uint64_t key[2] = {file, offset};
  return set_at(h, t, XXH3_64bits(key, sizeof key) % t->nsets);
}

static _Atomic uint64_t *data_of(struct bc_header *h, const struct bc_tier *t, const struct bc_set *s, unsigned way)
{
  uint64_t set_index = (uint64_t)((const char *)s - ((char *)h + t->sets_off)) / sizeof(struct bc_set);
  uint64_t entry = set_index * BC_WAYS + way;
  return (_Atomic uint64_t *)((char *)h + t->data_off + entry * t->block_max);
}

/* The tier a block of len bytes goes to: the first (smallest entries) with
** a set that holds it; NULL if none does. */
static const struct bc_tier *tier_for(const struct bc_header *h, size_t len)
{
  for (uint64_t i = 0; i < h->ntiers; i++)
    if (h->tier[i].nsets && len <= h->tier[i].block_max)
      return &h->tier[i];
  return NULL;
}

/* The seqlock's two fences. TSan does not model fences (gcc warns about
** them under -fsanitize=thread); every shared access here is atomic, so it
** reports no race either way. */
#if defined(__SANITIZE_THREAD__) && defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wtsan"
#endif
static inline void fence_acquire(void) { atomic_thread_fence(memory_order_acquire); }
static inline void fence_release(void) { atomic_thread_fence(memory_order_release); }
#if defined(__SANITIZE_THREAD__) && defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

/* relaxed: counters are statistics; nothing is ordered by them. */
static void count(_Atomic uint64_t *c) { atomic_fetch_add_explicit(c, 1, memory_order_relaxed); }

void bc_init_of(const struct bc_tiers *t, void *area, size_t area_bytes)
{
  if (!area || area_bytes < BC_HEADER)
    return;
  struct bc_header *h = area;
  uint64_t nsets[BC_MAX_TIERS];
  int enabled = layout_of_area(t, area_bytes, nsets) != 0;
  memset(h, 0, BC_HEADER);   /* nobody else sees the area yet */
  h->ntiers = enabled ? t->n : 0;
  if (enabled)
    lay_out(t, nsets, h->tier);
  atomic_init(&h->hits, 0);
  atomic_init(&h->misses, 0);
  atomic_init(&h->inserts, 0);
  atomic_init(&h->evictions, 0);
  atomic_init(&h->too_big, 0);
  for (uint64_t k = 0; k < h->ntiers; k++)
    for (uint64_t i = 0; i < h->tier[k].nsets; i++) {
      struct bc_set *s = set_at(h, &h->tier[k], i);
      atomic_init(&s->hand, 0);
      atomic_init(&s->backed, 0);
      for (unsigned w = 0; w < BC_WAYS; w++) {
        struct bc_entry *e = &s->way[w];
        atomic_init(&e->state, st_make(0, 0, 0));
        atomic_init(&e->file, 0);
        atomic_init(&e->offset, 0);
        atomic_init(&e->len, 0);
        atomic_init(&e->ref, 0);
        e->pad = 0;
      }
    }
  h->magic = BC_MAGIC;   /* the creator publishes the whole area to others later */
}

void bc_init(void *area, size_t area_bytes) { bc_init_of(&bc_default_tiers, area, area_bytes); }

int bc_header_intact_of(const struct bc_tiers *t, const void *area, size_t area_bytes)
{
  if (!area || area_bytes < BC_HEADER)
    return 1;   /* bc_init formatted nothing there */
  const struct bc_header *h = area;
  uint64_t nsets[BC_MAX_TIERS];
  struct bc_tier want[BC_MAX_TIERS];
  if (!layout_of_area(t, area_bytes, nsets))
    return h->magic == BC_MAGIC && h->ntiers == 0;
  lay_out(t, nsets, want);
  return h->magic == BC_MAGIC && h->ntiers == t->n && !memcmp(h->tier, want, t->n * sizeof *want);
}

int bc_header_intact(const void *area, size_t area_bytes)
{
  return bc_header_intact_of(&bc_default_tiers, area, area_bytes);
}

/* ---- copying words ------------------------------------------------------------- */

/* relaxed loads: a racing writer may change the words under us; the caller's
** seqlock re-check throws such a copy away. */
static void copy_out(const _Atomic uint64_t *src, uint8_t *dst, size_t len)
{
  size_t i = 0;
  for (; i + 8 <= len; i += 8) {
    uint64_t w = atomic_load_explicit(&src[i / 8], memory_order_relaxed);
    memcpy(dst + i, &w, 8);
  }
  if (i < len) {
    uint64_t w = atomic_load_explicit(&src[i / 8], memory_order_relaxed);
    memcpy(dst + i, &w, len - i);
  }
}

/* relaxed stores: the writer's release fence after its claim and its release
** publication order them for readers. */
static void copy_in(_Atomic uint64_t *dst, const uint8_t *src, size_t len)
{
  size_t i = 0;
  for (; i + 8 <= len; i += 8) {
    uint64_t w;
    memcpy(&w, src + i, 8);
    atomic_store_explicit(&dst[i / 8], w, memory_order_relaxed);
  }
  if (i < len) {
    uint64_t w = 0;
    memcpy(&w, src + i, len - i);
    atomic_store_explicit(&dst[i / 8], w, memory_order_relaxed);
  }
}

/* ---- lookup -------------------------------------------------------------------- */

/* Way w of s, if it holds (file, offset) stably published and no longer
** than cap: 1 with rd set up to read it. */
static int open_way(struct bc_header *h, const struct bc_tier *t, struct bc_set *s, unsigned w, uint64_t file,
                    uint64_t offset, size_t cap, struct bc_read *rd)
{
  struct bc_entry *e = &s->way[w];
  /* acquire: pairs with the publisher's release store, so the tags and data
  ** it wrote before publishing are what we read below (unless overwritten). */
  uint64_t s1 = atomic_load_explicit(&e->state, memory_order_acquire);
  if (st_owner(s1) || !st_valid(s1))
    return 0;
  /* relaxed: ordered after s1 by its acquire; validated by bc_read_end */
  if (atomic_load_explicit(&e->file, memory_order_relaxed) != file ||
      atomic_load_explicit(&e->offset, memory_order_relaxed) != offset)
    return 0;
  uint64_t n = atomic_load_explicit(&e->len, memory_order_relaxed);
  if (n > t->block_max || n > cap)
    return 0;
  rd->entry = e;
  rd->data = data_of(h, t, s, w);
  rd->seen = s1;
  rd->len = (size_t)n;
  return 1;
}

/* The entry of (file, offset), no longer than cap: 1 with rd set up to read it. */
static int find_entry(void *area, uint64_t file, uint64_t offset, size_t cap, struct bc_read *rd)
{
  struct bc_header *h = header(area);
  if (!h)
    return 0;
  /* Each tier that may hold a block of at most cap bytes: the block is in
  ** the first that holds its length (tier_for), so not in one after a tier
  ** whose entries hold cap. */
  for (uint64_t i = 0; i < h->ntiers; i++) {
    const struct bc_tier *t = &h->tier[i];
    if (!t->nsets)
      continue;
    struct bc_set *s = set_of(h, t, file, offset);
    for (unsigned w = 0; w < BC_WAYS; w++)
      if (open_way(h, t, s, w, file, offset, cap, rd))
        return 1;
    if (cap <= t->block_max)
      break;
  }
  return 0;
}

int bc_read_begin(void *area, uint64_t file, uint64_t offset, size_t cap, struct bc_read *rd,
                  _Atomic uint64_t *hits, _Atomic uint64_t *misses)
{
  rd->hits = hits;
  rd->misses = misses;
  if (find_entry(area, file, offset, cap, rd))
    return 1;
  if (header(area))
    count(misses);
  return 0;
}

void bc_prefetch_end(void *area, uint64_t file, uint64_t offset, size_t bytes)
{
  struct bc_read rd;
  if (!find_entry(area, file, offset, BC_BLOCK_MAX, &rd))
    return;
  size_t from = rd.len > bytes ? rd.len - bytes : 0;
  for (size_t at = from / 64 * 64; at < rd.len; at += 64)
    __builtin_prefetch((const char *)rd.data + at);
}

void bc_read_copy(const struct bc_read *rd, size_t from, size_t to, void *dst)
{
  if (to > rd->len)
    to = rd->len;
  if (from >= to)
    return;
  size_t first = from / 8;   /* whole words: the word holding byte from starts at byte 8 * first */
  copy_out(rd->data + first, (uint8_t *)dst + 8 * first, to - 8 * first);
}

int bc_read_end(const struct bc_read *rd)
{
  struct bc_entry *e = rd->entry;
  /* acquire fence: if a copy read any word a later writer stored (after its
  ** claim and release fence), the re-load below sees that claim or later. */
  fence_acquire();
  /* relaxed: the fence above orders it after the copies */
  if (atomic_load_explicit(&e->state, memory_order_relaxed) != rd->seen) {
    count(rd->misses);   /* changed while we copied: maybe torn; a miss, no retry */
    return 0;
  }
  /* relaxed: the reference bit is a CLOCK hint; written only when clear so
  ** that hits on a hot block do not bounce its cache line between CPUs. */
  if (!atomic_load_explicit(&e->ref, memory_order_relaxed))
    atomic_store_explicit(&e->ref, 1, memory_order_relaxed);
  count(rd->hits);
  return 1;
}

int bc_lookup(void *area, uint64_t file, uint64_t offset, void *dst, size_t cap, size_t *len)
{
  struct bc_header *h = header(area);
  return h ? bc_lookup_counted(area, file, offset, dst, cap, len, &h->hits, &h->misses) : 0;
}

int bc_lookup_counted(void *area, uint64_t file, uint64_t offset, void *dst, size_t cap, size_t *len,
                      _Atomic uint64_t *hits, _Atomic uint64_t *misses)
{
  struct bc_read rd;
  if (!bc_read_begin(area, file, offset, cap, &rd, hits, misses))
    return 0;
  bc_read_copy(&rd, 0, rd.len, dst);
  if (!bc_read_end(&rd))
    return 0;
  *len = rd.len;
  return 1;
}

/* ---- insert -------------------------------------------------------------------- */

/* Is (file, offset) cached (or was it, a moment ago)? And *free_way: a way
** of the set that is free (-1: none), with its state. Stale answers only
** mean a skipped or a duplicate insert, one admitted or refused wrongly, or
** a claim of the free way that fails (the caller then picks a victim), so
** relaxed loads suffice. */
static int present(struct bc_set *s, uint64_t file, uint64_t offset, int *free_way, uint64_t *free_state)
{
  *free_way = -1;
  for (unsigned w = 0; w < BC_WAYS; w++) {
    struct bc_entry *e = &s->way[w];
    uint64_t st = atomic_load_explicit(&e->state, memory_order_relaxed);
    if (!st_owner(st) && !st_valid(st) && *free_way < 0) {
      *free_way = (int)w;
      *free_state = st;
    }
    if (!st_owner(st) && st_valid(st) && atomic_load_explicit(&e->file, memory_order_relaxed) == file &&
        atomic_load_explicit(&e->offset, memory_order_relaxed) == offset)
      return 1;
  }
  return 0;
}

/* Whether this insert into a full set goes ahead: with probability 1 in
** BC_ADMIT_EVERY, drawn per thread (see the header). Not a count of the
** thread's inserts, which would never admit in a process that misses three
** times in its life and would favour the same places in a repeating
** pattern of misses (a columnar read's segments); not a count per block,
** which would need memory for blocks not cached. Asking before the victim
** is picked leaves the set's reference bits alone when it does not. */
static int admitted(void)
{
  return shm_thread_random() % BC_ADMIT_EVERY == 0;
}

/* CLOCK: the next way that is free, or valid with its reference bit clear
** (bits found set are cleared on the way). Its state to *state; -1 if two
** sweeps found nothing (every way being written). */
static int pick_victim(struct bc_set *s, uint64_t *state)
{
  for (unsigned step = 0; step < 2 * BC_WAYS; step++) {
    /* relaxed: the hand only spreads the sweep; any value is correct.
    ** 2^32 is a multiple of BC_WAYS, so wrapping keeps the order. */
    unsigned w = atomic_fetch_add_explicit(&s->hand, 1, memory_order_relaxed) % BC_WAYS;
    struct bc_entry *e = &s->way[w];
    /* relaxed: the claim's CAS re-checks the state */
    uint64_t st = atomic_load_explicit(&e->state, memory_order_relaxed);
    if (st_owner(st))
      continue;
    /* relaxed: reference bits are hints */
    if (st_valid(st) && atomic_load_explicit(&e->ref, memory_order_relaxed)) {
      atomic_store_explicit(&e->ref, 0, memory_order_relaxed);
      continue;
    }
    *state = st;
    return (int)w;
  }
  return -1;
}

/* Claim way w from the stable state st for owner: 1 and *claimed, or 0 if
** someone else changed it first. */
static int claim(struct bc_entry *e, uint64_t st, uint32_t owner, uint64_t *claimed)
{
  uint64_t want = st_make(st_version(st) + 1, 0, owner);
  /* acquire on success: the previous writer's (or reaper's) stores happen
  ** before ours, so ours are the newest. relaxed on failure: we give up. */
  if (!atomic_compare_exchange_strong_explicit(&e->state, &st, want, memory_order_acquire, memory_order_relaxed))
    return 0;
  /* release fence: a reader whose copy sees any store of ours below (after
  ** its acquire fence) also sees this claim, and discards the copy. */
  fence_release();
  *claimed = want;
  return 1;
}

/* relaxed stores: ordered after the claim by its fence, and before the
** publication by its release. */
static void write_tags(struct bc_entry *e, uint64_t file, uint64_t offset, uint64_t len)
{
  atomic_store_explicit(&e->file, file, memory_order_relaxed);
  atomic_store_explicit(&e->offset, offset, memory_order_relaxed);
  atomic_store_explicit(&e->len, len, memory_order_relaxed);
  atomic_store_explicit(&e->ref, 0, memory_order_relaxed);
}

static void publish(struct bc_entry *e, uint64_t claimed)
{
  /* release: a reader that loads this state (acquire) sees the tags and data */
  atomic_store_explicit(&e->state, st_make(st_version(claimed) + 1, 1, 0), memory_order_release);
}

/* Claim a victim way of (file, offset)'s set: its index, or -1. */
static int claim_victim(struct bc_header *h, struct bc_set *s, uint32_t owner, uint64_t *claimed)
{
  uint64_t st;
  int w = pick_victim(s, &st);
  if (w < 0 || !claim(&s->way[w], st, owner, claimed))
    return -1;   /* contention: give up rather than wait */
  if (st_valid(st))
    count(&h->evictions);
  return w;
}

/* Give set s's blocks memory before the first write to any of them. Two
** processes may both reserve it: reserving is idempotent. */
static int back_set(struct bc_header *h, const struct bc_tier *t, struct bc_set *s, const struct bc_backing *b)
{
  /* acquire: pairs with the release store below in whichever process backed
  ** the set: its reservation is done before we write into the blocks */
  if (!b || atomic_load_explicit(&s->backed, memory_order_acquire))
    return 1;
  if (b->reserve(b->ctx, data_of(h, t, s, 0), (size_t)(BC_WAYS * t->block_max)) != 0)
    return 0;
  atomic_store_explicit(&s->backed, 1, memory_order_release);
  return 1;
}

void bc_insert(void *area, uint64_t file, uint64_t offset, const void *data, size_t len, uint32_t owner,
               const struct bc_backing *backing)
{
  struct bc_header *h = header(area);
  if (!h || owner == 0 || owner > OWNER_MASK || (!data && len))
    return;
  const struct bc_tier *t = tier_for(h, len);
  if (!t) {
    count(&h->too_big);
    return;
  }
  struct bc_set *s = set_of(h, t, file, offset);
  int free_way;
  uint64_t free_state = 0, claimed;
  if (present(s, file, offset, &free_way, &free_state) || (free_way < 0 && !admitted()) ||
      !back_set(h, t, s, backing))
    return;
  /* a free way first: CLOCK's hand may point at a valid block meanwhile */
  int w = free_way >= 0 && claim(&s->way[free_way], free_state, owner, &claimed)
              ? free_way
              : claim_victim(h, s, owner, &claimed);
  if (w < 0)
    return;
  write_tags(&s->way[w], file, offset, len);
  size_t half = (len / 2) & ~(size_t)7;   /* whole words: copy_in pads a partial one */
  copy_in(data_of(h, t, s, (unsigned)w), data, half);
  CRASHPOINT("cache.insert");   /* killed here: the reaper frees the half-written entry */
  copy_in(data_of(h, t, s, (unsigned)w) + half / 8, (const uint8_t *)data + half, len - half);
  publish(&s->way[w], claimed);
  count(&h->inserts);
}

/* ---- reaping and statistics ---------------------------------------------------- */

/* Entry e, claimed by a dead writer in state st, becomes free and empty. The
** tags are written as that writer would have: only one reaper handles a dead
** owner at a time (the slot lock makes reaping exclusive), and no one else
** touches an entry that names a writer. */
static void release_entry(struct bc_entry *e, uint64_t st)
{
  /* release fence, as claim has after its CAS: a reader that began on the
  ** entry's last published state and whose relaxed loads see a tag written
  ** below (len 0 with the old file and offset, say) must also see, after
  ** its acquire fence, that the state moved on, and discard its copy. The
  ** dead writer's own fence does not cover our stores, and our relaxed load
  ** of its claim orders nothing in C11 (x86 and ARMv8 happen to). */
  fence_release();
  write_tags(e, 0, 0, 0);
  /* release: whoever claims the entry next (acquire) sees the emptied tags
  ** before its own stores. relaxed on failure: someone else reaped it. */
  atomic_compare_exchange_strong_explicit(&e->state, &st, st_make(st_version(st) + 1, 0, 0), memory_order_release,
                                          memory_order_relaxed);
}

void bc_release_owner(void *area, uint32_t owner)
{
  struct bc_header *h = header(area);
  if (!h || owner == 0 || owner > OWNER_MASK)
    return;
  for (uint64_t k = 0; k < h->ntiers; k++)
    for (uint64_t i = 0; i < h->tier[k].nsets; i++) {
      struct bc_set *s = set_at(h, &h->tier[k], i);
      for (unsigned w = 0; w < BC_WAYS; w++) {
        /* relaxed: only the dead owner could change a state that names it */
        uint64_t st = atomic_load_explicit(&s->way[w].state, memory_order_relaxed);
        if (st_owner(st) == owner)
          release_entry(&s->way[w], st);
      }
    }
}

void bc_get_stats(const void *area, struct bc_stats *out)
{
  memset(out, 0, sizeof *out);
  struct bc_header *h = header(area);
  if (!h)
    return;
  /* relaxed: counters are independent statistics */
  out->hits = atomic_load_explicit(&h->hits, memory_order_relaxed);
  out->misses = atomic_load_explicit(&h->misses, memory_order_relaxed);
  out->inserts = atomic_load_explicit(&h->inserts, memory_order_relaxed);
  out->evictions = atomic_load_explicit(&h->evictions, memory_order_relaxed);
  out->too_big = atomic_load_explicit(&h->too_big, memory_order_relaxed);
  for (uint64_t k = 0; k < h->ntiers; k++) {
    out->capacity_blocks += h->tier[k].nsets * BC_WAYS;
    out->capacity_bytes += h->tier[k].nsets * BC_WAYS * h->tier[k].block_max;
  }
}

#ifdef SOCHDB_TESTING
int bc_test_claim_and_stop(void *area, uint64_t file, uint64_t offset, size_t len, uint32_t owner)
{
  struct bc_header *h = header(area);
  const struct bc_tier *t = h ? tier_for(h, len) : NULL;
  if (!t || owner == 0 || owner > OWNER_MASK)
    return 0;
  struct bc_set *s = set_of(h, t, file, offset);
  uint64_t claimed;
  int w = claim_victim(h, s, owner, &claimed);
  if (w < 0)
    return 0;
  write_tags(&s->way[w], file, offset, len);
  uint8_t half[BC_BLOCK_MAX / 2];
  memset(half, 0xAB, len / 2);
  copy_in(data_of(h, t, s, (unsigned)w), half, len / 2);
  return 1;   /* and never publish: the writer "died" here */
}

unsigned bc_test_owned(const void *area, uint32_t owner)
{
  struct bc_header *h = header(area);
  unsigned n = 0;
  for (uint64_t k = 0; h && k < h->ntiers; k++)
    for (uint64_t i = 0; i < h->tier[k].nsets; i++)
      for (unsigned w = 0; w < BC_WAYS; w++)
        n += st_owner(atomic_load_explicit(&set_at(h, &h->tier[k], i)->way[w].state, memory_order_relaxed)) ==
             owner;
  return n;
}
#endif
