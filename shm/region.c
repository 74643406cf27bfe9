/*
** region.c — creating, validating and attaching the shared region file.
**
** The region is a cache of the database directory, never trusted blindly: it
** is checked for magic, layout version, header checksum, size and the
** directory's identity (a random id stored in DIR/sochdb.id) before use. A
** region left by another directory that happened to have the same inode is
** unlinked and made again; one of another layout version is refused with
** SOCHDB_VERSION; a damaged header is SOCHDB_CORRUPT.
*/
#include "region.h"

#include "arena.h"
#include "blockcache.h"
#include "durable.h"
#include "error.h"
#include "filelist.h"
#include "seqring.h"
#include "slots.h"
#include "testhooks.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#define SHM_HEADER_SEED 0x5e9d1ca7e5ULL

static uint64_t align_up(uint64_t x, uint64_t a) { return (x + a - 1) & ~(a - 1); }

/* This boot's id (/proc/sys/kernel/random/boot_id, hashed to 16 bytes), or
** zeros where it cannot be read. A region is shared memory: one found after
** a reboot (when $SOCHDB_SHM_DIR is on a disk) may be torn anywhere, so it
** is rebuilt from the WAL rather than trusted. */
static void current_boot_id(uint8_t out[16])
{
  memset(out, 0, 16);
  char text[64] = { 0 };
  int fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return;
  ssize_t n = read(fd, text, sizeof text - 1);
  close(fd);
  if (n <= 0)
    return;
  XXH128_hash_t h = XXH3_128bits(text, (size_t)n);
  memcpy(out, &h.low64, 8);
  memcpy(out + 8, &h.high64, 8);
}

int shm_region_path(const char *dir, char *out, size_t n)
{
  struct stat st;
  if (stat(dir, &st) != 0)
    return sdb_fail_errno("stat %s", dir);
  /* secure_getenv: a set-user-ID program must not create its region
  ** (and follow a symlink planted there) where its caller says */
  const char *shm_dir = secure_getenv("SOCHDB_SHM_DIR");
  if (!shm_dir || !*shm_dir)
    shm_dir = "/dev/shm";
  int len = snprintf(out, n, "%s/sochdb-%llx-%llx.region", shm_dir,
                     (unsigned long long)st.st_dev, (unsigned long long)st.st_ino);
  if (len < 0 || (size_t)len >= n)
    return sdb_fail(SOCHDB_INVALID, "region path under %s is too long", shm_dir);
  return SOCHDB_OK;
}

uint64_t shm_header_checksum(const struct shm_header *h)
{
  /* from the field after magic: the magic is stored after the checksum */
  const char *from = (const char *)&h->layout_version;
  return XXH3_64bits_withSeed(from, (size_t)((const char *)&h->checksum - from), SHM_HEADER_SEED);
}

uint64_t shm_layout_arena_off(const struct shm_header *h, uint32_t idx)
{
  uint64_t first = align_up(h->memtables_off + arena_table_bytes(), 1ull << 21);
  return first + (uint64_t)idx * h->memtable_bytes;
}

int shm_reserve(const shm_region *r, uint64_t off, uint64_t len)
{
  int fault = FAULT("shm.reserve");
  if (fault)
    return fault;
  /* fallocate(2), not posix_fallocate: where the filesystem cannot, glibc's
  ** fallback writes a zero byte into each block, which could land on a byte
  ** another process has just written there (arenas are reserved while they
  ** are being filled). Without fallocate, pages simply come on first write.
  ** EINTR: tmpfs gives up on any pending signal (kernels before 6.11), so a
  ** process with an interval timer would otherwise see a full tmpfs. */
  for (;;) {
    if (fallocate(r->fd, 0, (off_t)off, (off_t)len) == 0)
      return 0;
    if (errno != EINTR)
      return errno == EOPNOTSUPP || errno == EINVAL ? 0 : errno;
  }
}

/* The section offsets of h, from its region_bytes and cache_bytes: the one
** layout. */
static void place_sections(struct shm_header *h)
{
  h->rec_ring_entries = durable_ring_entries(h->region_bytes);
  h->slots_off = SHM_HEADER_BYTES;
  h->ring_off = align_up(h->slots_off + slots_section_bytes(), 4096);
  h->rec_ring_off = align_up(h->ring_off + seqring_section_bytes(), 4096);
  h->files_off = align_up(h->rec_ring_off + durable_section_bytes(h->rec_ring_entries), 4096);
  h->cache_off = h->cache_bytes ? align_up(h->files_off + fl_section_bytes(), 4096) : 0;
  h->memtables_off = align_up(h->files_off + fl_section_bytes() + h->cache_bytes, 4096);
}

/* Where the sections go; fills the size and offset fields of h. */
static void layout_sections(struct shm_header *h, uint64_t region_bytes, uint64_t memtable_bytes,
                            uint64_t cache_bytes)
{
  h->header_bytes = SHM_HEADER_BYTES;
  h->region_bytes = region_bytes;
  h->memtable_bytes = memtable_bytes;
  h->n_slots = SHM_MAX_SLOTS;
  h->cache_bytes = bc_area_bytes(cache_bytes);
  place_sections(h);
}

/* Every section where the layout puts it. The checksum only says the header
** is as some process wrote it (its seed is no secret): offsets that point
** elsewhere would be followed out of the mapping. */
static int sections_in_place(const struct shm_header *h)
{
  if (h->cache_bytes > h->region_bytes)
    return 0;   /* first: the sums below must not wrap */
  /* not a copy of *h: its mutable half moves */
  struct shm_header probe = { .region_bytes = h->region_bytes, .cache_bytes = h->cache_bytes };
  place_sections(&probe);
  return probe.rec_ring_entries == h->rec_ring_entries && probe.slots_off == h->slots_off &&
         probe.ring_off == h->ring_off && probe.rec_ring_off == h->rec_ring_off &&
         probe.files_off == h->files_off && probe.cache_off == h->cache_off &&
         probe.memtables_off == h->memtables_off;
}

/* The memtables a region of region_bytes holds after the sections laid out
** in h (at most SHM_MAX_MEMTABLES, and what SHM_MAX_ARENA_SPAN allows: the
** rest of a larger region stays unused): SOCHDB_OK with *n, 2 or more, or
** SOCHDB_INVALID. */
static int memtables_that_fit(const struct shm_header *h, uint64_t region_bytes, uint64_t *n)
{
  uint64_t first_arena = shm_layout_arena_off(h, 0);
  if (first_arena >= region_bytes)
    return sdb_fail(SOCHDB_INVALID, "region of %llu bytes is too small for its tables",
                    (unsigned long long)region_bytes);
  *n = (region_bytes - first_arena) / h->memtable_bytes;
  if (*n > SHM_MAX_MEMTABLES)
    *n = SHM_MAX_MEMTABLES;
  if (*n > SHM_MAX_ARENA_SPAN / h->memtable_bytes)
    *n = SHM_MAX_ARENA_SPAN / h->memtable_bytes;
  if (*n < 2)
    return sdb_fail(SOCHDB_INVALID, "region of %llu bytes holds fewer than 2 memtables of %llu bytes",
                    (unsigned long long)region_bytes, (unsigned long long)h->memtable_bytes);
  return SOCHDB_OK;
}

int shm_layout_check(uint64_t region_bytes, uint64_t memtable_bytes, uint64_t cache_bytes)
{
  struct shm_header probe;
  memset(&probe, 0, sizeof probe);
  layout_sections(&probe, region_bytes, memtable_bytes, cache_bytes);
  uint64_t n = 0;
  return memtables_that_fit(&probe, region_bytes, &n);
}

/* Fill in a zeroed mapping. The magic goes last (release) so that no
** attacher can see a half-made region as valid. */
static int region_format(char *base, const struct shm_open_params *p, shm_region *r)
{
  struct shm_header *h = (struct shm_header *)base;
  h->layout_version = SHM_LAYOUT_VERSION;
  memcpy(h->db_id, p->db_id, sizeof h->db_id);
  current_boot_id(h->boot_id);
  layout_sections(h, p->region_bytes, p->memtable_bytes, p->cache_bytes);
  uint64_t n = 0;
  int rc = memtables_that_fit(h, p->region_bytes, &n);
  if (rc != SOCHDB_OK)
    return rc;
  h->n_memtables = (uint32_t)n;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  h->created_unix_ns = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;

  r->base = base;
  r->hdr = h;
  r->ref_base = shm_layout_arena_off(h, 0) - 8;
  seqring_init(r, 1);
  durable_init(r, 1);
  atomic_init(&h->epoch, 1);
  atomic_init(&h->retired_max_seq, 0);
  fl_init(r);
  if (h->cache_bytes)
    bc_init(shm_at(r, h->cache_off), h->cache_bytes);
  arena_init_all(r, shm_layout_arena_off(h, 0));
  h->checksum = shm_header_checksum(h);
  if (p->populate && (rc = p->populate(r, p->populate_ctx)) != SOCHDB_OK)
    return rc;
  /* release: everything above happens-before any acquire load that sees the magic */
  __atomic_store_n(&h->magic, SHM_MAGIC, __ATOMIC_RELEASE);
  return SOCHDB_OK;
}

static int region_check(const char *path, const struct shm_header *h, const struct shm_open_params *p,
                        off_t file_size)
{
  if (h->layout_version != SHM_LAYOUT_VERSION)
    return sdb_fail(SOCHDB_VERSION, "region %s has layout version %u; this library speaks %u (another version of "
                    "sochdb made it)", path, h->layout_version, SHM_LAYOUT_VERSION);
  if (h->checksum != shm_header_checksum(h))
    return sdb_fail(SOCHDB_CORRUPT, "region header checksum mismatch");
  if (h->memtable_bytes < SHM_MIN_MEMTABLE_BYTES || h->memtable_bytes > SHM_MAX_MEMTABLE_BYTES ||
      h->memtable_bytes % 4096)   /* first: the products below must not wrap */
    return sdb_fail(SOCHDB_CORRUPT, "region header names memtables of %llu bytes",
                    (unsigned long long)h->memtable_bytes);
  if (h->header_bytes != SHM_HEADER_BYTES || h->region_bytes != (uint64_t)file_size ||
      h->n_slots != SHM_MAX_SLOTS || h->n_memtables < 2 || h->n_memtables > SHM_MAX_MEMTABLES ||
      !sections_in_place(h) || shm_layout_arena_off(h, h->n_memtables) > h->region_bytes ||
      (uint64_t)h->n_memtables * h->memtable_bytes > SHM_MAX_ARENA_SPAN)
    return sdb_fail(SOCHDB_CORRUPT, "region header describes an impossible layout");
  (void)p;
  return SOCHDB_OK;
}

/* True when fd still names the file at path (it may have been unlinked and
** replaced by another opener between our open() and our flock()). */
static int fd_is_path(int fd, const char *path)
{
  struct stat a, b;
  return fstat(fd, &a) == 0 && stat(path, &b) == 0 && a.st_ino == b.st_ino && a.st_dev == b.st_dev;
}

enum { ATTACH_DONE, ATTACH_RETRY };

/* A region this library cannot attach (another layout version: an upgrade;
** a damaged header) that no process uses is removed, and the next attempt
** makes it anew from the directory, as a stale one: what it held is in the
** log, but for ASYNC commits a crashed daemon left unlogged, which no
** process could read from it anyway. One in use (a slot is held: shm/slots.h,
** and an attacher takes its slot before it lets go of the flock we hold) is
** refused, saying when it will be rebuilt. Returns 1 when removed, else rc's
** error, its message extended. */
static int replace_if_unused(shm_region *r, int rc, int *again)
{
  char why[512];
  snprintf(why, sizeof why, "%s", sochdb_last_error());   /* sdb_fail writes where it lies */
  int held = slots_any_held(r->fd);
  if (held == 0 && unlink(r->path) == 0) {
    *again = ATTACH_RETRY;
    return 1;
  }
  if (held > 0)
    sdb_fail(rc, "%s; processes use it: once they and sochdbd have stopped, the next open rebuilds it from the "
             "database's files", why);
  else if (held < 0)   /* cannot tell: never advise removing a region that may be in use */
    sdb_fail(rc, "%s; whether a process uses it cannot be told (%s): once every process of the database and "
             "sochdbd have stopped, remove it, and the next open rebuilds it from the database's files", why,
             strerror(errno));
  else
    sdb_fail(rc, "%s; nobody uses it, but it could not be removed (%s): remove it, and the next open rebuilds it "
             "from the database's files", why, strerror(errno));
  return 0;
}

/* One attempt, under the exclusive flock: validate, or (re)initialise. */
static int region_attach_locked(const struct shm_open_params *p, shm_region *r, int *again)
{
  struct stat st;
  if (fstat(r->fd, &st) != 0)
    return sdb_fail_errno("fstat %s", r->path);
  *again = ATTACH_DONE;
  if ((uint64_t)st.st_size >= SHM_HEADER_BYTES) {
    struct shm_header *h = mmap(NULL, SHM_HEADER_BYTES, PROT_READ, MAP_SHARED, r->fd, 0);
    if (h == MAP_FAILED)
      return sdb_fail_errno("mmap %s", r->path);
    uint64_t magic = __atomic_load_n(&h->magic, __ATOMIC_ACQUIRE);
    int rc = SOCHDB_OK;
    int stale = 0;
    if (magic == SHM_MAGIC) {
      rc = region_check(r->path, h, p, st.st_size);
      uint8_t boot[16];
      current_boot_id(boot);
      stale = rc == SOCHDB_OK && memcmp(h->db_id, p->db_id, sizeof h->db_id) != 0;
      if (rc == SOCHDB_OK && !stale && memcmp(h->boot_id, boot, sizeof boot) != 0) {
        /* Of an earlier boot, unless a process holds a slot of it: then it
        ** is this boot's, and one of the two ids is unknown (all zeros: the
        ** boot id could not be read, EMFILE or no /proc). Replacing a region
        ** in use would split the database between two regions. */
        int held = slots_any_held(r->fd);
        if (held < 0) {
          int err = errno;
          munmap(h, SHM_HEADER_BYTES);
          errno = err;
          return sdb_fail_errno("test the process slots of %s", r->path);
        }
        stale = held == 0;
      }
    } else if (magic != 0) {
      rc = sdb_fail(SOCHDB_CORRUPT, "%s is not a sochdb region (bad magic)", r->path);
    }
    /* Ours, if damaged: the magic, or (a few bytes written over its start)
    ** its size or this directory's id where they belong. Anything else at
    ** our path is left alone. */
    int ours = magic == SHM_MAGIC || h->region_bytes == (uint64_t)st.st_size ||
               memcmp(h->db_id, p->db_id, sizeof h->db_id) == 0;
    size_t size = rc == SOCHDB_OK && magic == SHM_MAGIC ? h->region_bytes : 0;
    munmap(h, SHM_HEADER_BYTES);
    if (rc != SOCHDB_OK)
      return ours && replace_if_unused(r, rc, again) ? SOCHDB_OK : rc;
    if (magic == 0 && slots_any_held(r->fd) != 0) {
      /* No magic, yet a slot is held: not a creator that died before
      ** publishing it (an opener takes its slot after the magic is out),
      ** but zeros written over the start of a region in use. Re-initialising
      ** it in place would truncate the memory of every attached process
      ** from under it (SIGBUS): refused like other damage while in use. */
      sdb_fail(SOCHDB_CORRUPT, "region %s has no magic while a process slot is held (its start was overwritten)",
               r->path);
      return replace_if_unused(r, SOCHDB_CORRUPT, again) ? SOCHDB_OK : SOCHDB_CORRUPT;
    }
    if (stale) {
      /* Left by a deleted directory whose inode was reused, or by an earlier
      ** boot: nobody can be using it for this database, so start afresh with
      ** a new file, which the WAL fills. */
      if (unlink(r->path) != 0)
        return sdb_fail_errno("unlink stale region %s", r->path);
      *again = ATTACH_RETRY;
      return SOCHDB_OK;
    }
    if (size) {
      void *base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, r->fd, 0);
      if (base == MAP_FAILED)
        return sdb_fail_errno("mmap %s (%zu bytes)", r->path, size);
      const struct shm_header *hdr = base;
      if (hdr->cache_bytes && !bc_header_intact((const char *)base + hdr->cache_off, hdr->cache_bytes)) {
        munmap(base, size);
        sdb_fail(SOCHDB_CORRUPT, "region %s: its block cache's header is damaged", r->path);
        return replace_if_unused(r, SOCHDB_CORRUPT, again) ? SOCHDB_OK : SOCHDB_CORRUPT;
      }
      r->base = base;
      r->size = size;
      r->hdr = base;
      r->ref_base = shm_layout_arena_off(r->hdr, 0) - 8;   /* meaningful once the header is validated */
      return SOCHDB_OK;
    }
    /* magic == 0: a creator died half-way (we hold the lock, so it is not
    ** still working). Initialise it again from scratch. */
  }
  /* exact bits, not reduced by this process's umask: every process that
  ** shares the database must be able to attach, whoever created it */
  if (fchmod(r->fd, p->file_mode) != 0)
    return sdb_fail_errno("chmod region %s", r->path);
  /* A file may not grow past RLIMIT_FSIZE: ftruncate would kill us with
  ** SIGXFSZ (the default action), not fail, under a `ulimit -f` smaller than
  ** the region (1 GiB by default, sparse though it is). */
  struct rlimit fsize;
  if (getrlimit(RLIMIT_FSIZE, &fsize) == 0 && fsize.rlim_cur != RLIM_INFINITY &&
      p->region_bytes > (uint64_t)fsize.rlim_cur) {
    errno = EFBIG;
    return sdb_fail_errno("create region %s of %llu bytes: this process may write files of at most %llu bytes "
                          "(RLIMIT_FSIZE, ulimit -f)", r->path, (unsigned long long)p->region_bytes,
                          (unsigned long long)fsize.rlim_cur);
  }
  if (ftruncate(r->fd, 0) != 0 || ftruncate(r->fd, (off_t)p->region_bytes) != 0)
    return sdb_fail_errno("size region %s to %llu bytes", r->path, (unsigned long long)p->region_bytes);
  void *base = mmap(NULL, p->region_bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, r->fd, 0);
  if (base == MAP_FAILED)
    return sdb_fail_errno("mmap %s", r->path);
  r->size = p->region_bytes;
  /* Pages of the tables, the cache's metadata and the start of the first
  ** arena now, not as a SIGBUS later: the cache's blocks and the rest of
  ** the arena are reserved as they fill (bc_insert, arena_alloc). */
  struct shm_header probe;
  memset(&probe, 0, sizeof probe);
  layout_sections(&probe, p->region_bytes, p->memtable_bytes, p->cache_bytes);
  uint64_t arena0 = shm_layout_arena_off(&probe, 0);
  uint64_t meta_end = probe.cache_bytes ? probe.cache_off + bc_meta_bytes(probe.cache_bytes) : probe.memtables_off;
  int err = 0;
  if (arena0 + p->memtable_bytes <= p->region_bytes) {   /* else region_format refuses it */
    /* Not the slots section: each slot's pages are reserved when a
    ** process first attaches it (slots.c), so the 256 slots cost only what
    ** is used of them. */
    err = shm_reserve(r, 0, probe.slots_off);
    if (err == 0)
      err = shm_reserve(r, probe.ring_off, meta_end - probe.ring_off);
    if (err == 0)
      err = shm_reserve(r, probe.memtables_off, arena_table_bytes());
    if (err == 0)
      err = shm_reserve(r, arena0, arena_first_reserve(p->memtable_bytes));
  }
  if (err != 0) {
    munmap(base, p->region_bytes);
    errno = err;
    return sdb_fail_errno("reserve shared memory for %s", r->path);
  }
  int rc = region_format(base, p, r);
  if (rc != SOCHDB_OK) {
    munmap(base, p->region_bytes);
    r->base = NULL;
    if (ftruncate(r->fd, 0) != 0) { /* leave an empty file: the next opener re-creates it */ }
  }
  return rc;
}

int shm_region_open(const struct shm_open_params *p, shm_region *r)
{
  memset(r, 0, sizeof *r);
  r->fd = -1;
  pthread_mutex_init(&r->reap_lock, NULL);
  int rc = shm_region_path(p->dir, r->path, sizeof r->path);
  if (rc != SOCHDB_OK)
    return rc;
  for (int attempt = 0; attempt < 100; attempt++) {
    r->fd = open(r->path, O_RDWR | O_CREAT | O_CLOEXEC, p->file_mode ? p->file_mode : 0600);
    if (r->fd < 0)
      return sdb_fail_errno("open region %s", r->path);
    if (flock(r->fd, LOCK_EX) != 0) {
      rc = sdb_fail_errno("flock region %s", r->path);
      break;
    }
    if (!fd_is_path(r->fd, r->path)) {
      close(r->fd);
      r->fd = -1;
      continue;
    }
    int again = ATTACH_DONE;
    rc = region_attach_locked(p, r, &again);
    if (rc == SOCHDB_OK && again == ATTACH_DONE && p->keep_locked)
      break;   /* the caller takes its slot, then shm_region_unlock */
    flock(r->fd, LOCK_UN);
    if (rc != SOCHDB_OK || again == ATTACH_DONE)
      break;
    close(r->fd);
    r->fd = -1;
  }
  if (rc != SOCHDB_OK || !r->base) {
    if (r->fd >= 0)
      close(r->fd);
    r->fd = -1;
    pthread_mutex_destroy(&r->reap_lock);
    return rc != SOCHDB_OK ? rc : sdb_fail(SOCHDB_BUSY, "region %s kept changing under us", r->path);
  }
  return SOCHDB_OK;
}

void shm_region_unlock(shm_region *r) { flock(r->fd, LOCK_UN); }

/* Unlink path if fd (open on it) still names it, under the exclusive flock
** that openers hold while they validate or replace a region. */
static int unlink_if_still(int fd, const char *path, int only_unused)
{
  if (flock(fd, LOCK_EX) != 0)
    return -1;
  int rc = 0;
  int held = only_unused ? slots_any_held(fd) : 0;   /* an attacher takes its slot under this flock */
  if (held != 0) {
    rc = -1;
    if (held > 0)
      errno = EBUSY;
  } else if (fd_is_path(fd, path)) {
    rc = unlink(path) == 0 ? 1 : -1;
  }
  int err = errno;
  flock(fd, LOCK_UN);
  errno = err;
  return rc;
}

int shm_region_unlink(shm_region *r) { return unlink_if_still(r->fd, r->path, 0); }

int shm_region_unlink_path(const char *path, int only_unused)
{
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return errno == ENOENT ? 0 : -1;
  int rc = unlink_if_still(fd, path, only_unused);
  int err = errno;
  close(fd);
  errno = err;
  return rc;
}

void shm_region_close(shm_region *r)
{
  if (r->base)
    munmap(r->base, r->size);
  if (r->fd >= 0)
    close(r->fd);
  r->base = NULL;
  r->hdr = NULL;
  r->fd = -1;
  pthread_mutex_destroy(&r->reap_lock);
}
