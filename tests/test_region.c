/*
** test_region.c — the shared region file (shm/region.c) and opening a
** database (src/db.c): where the region lives, creating and attaching,
** the header, refusing regions of another layout version or a damaged
** header, re-initialising a half-made one, replacing a stale one, options,
** file modes, the directory's identity file, and concurrent creation.
**
** Damage is done by hand with pwrite on the region file (offsets from
** struct shm_header) while no handle is open. Every test registers each
** database directory it creates (track_dir); the fixture unlinks their region
** files, whatever state they were left in, before removing the directories.
**
** In-process only (threads, no fork): this file also runs under TSan.
*/
#include <criterion/criterion.h>
#include <criterion/logging.h>

#include <pthread.h>
#include <stddef.h>
#include <sys/resource.h>

#include "error.h"
#include "internal.h"
#include "region.h"
#include "seqring.h"
#include "slots.h"
#include "sochdb.h"
#include "testutil.h"

/* ------------------------------------------------------------ fixture */

#define MAX_TRACKED 64
static char *tracked[MAX_TRACKED];
static int ntracked;

/* Remember a database directory: its region file is unlinked at the end. */
static void track_dir(const char *dir)
{
  if (ntracked < MAX_TRACKED)
    tracked[ntracked++] = strdup(dir);
}

/* A path under the test's directory (not created). Caller frees. */
static char *sub(const char *name)
{
  const char *dir = tu_dir();
  char *p = malloc(strlen(dir) + strlen(name) + 2);
  cr_assert_not_null(p, "malloc");
  sprintf(p, "%s/%s", dir, name);
  track_dir(p);
  return p;
}

static void fx_init(void)
{
  tu_setup();
  ntracked = 0;
}

/* The region files of the tracked directories, found by their paths whatever
** state they are in; then tu_teardown does the same for tu_db_dir and removes
** the directories. */
static void fx_fini(void)
{
  for (int i = ntracked - 1; i >= 0; i--) {
    tu_remove_region(tracked[i]);
    free(tracked[i]);
  }
  ntracked = 0;
  tu_teardown();
}

TestSuite(region, .init = fx_init, .fini = fx_fini, .timeout = 60);

#define SMALL_REGION   (8u << 20)
#define SMALL_MEMTABLE (1u << 20)

static sochdb_options small_opts(void) { return tu_options(SMALL_REGION, SMALL_MEMTABLE, 0); }

/* sochdb_open must fail with `want`, leave *out NULL and a detail. */
static void open_fails(const char *dir, const sochdb_options *o, int want, const char *what)
{
  sochdb *db = (sochdb *)0x1;
  sdb_clear_error();
  int rc = sochdb_open(dir, o, &db);
  if (rc == SOCHDB_OK && db && db != (sochdb *)0x1)
    sochdb_close(db);
  cr_assert_eq(rc, want, "%s: sochdb_open returned %s (%d), expected %s (%d) [%s]", what, sochdb_strerror(rc), rc,
               sochdb_strerror(want), want, sochdb_last_error());
  cr_assert_null(db, "%s: a failed open left *out = %p", what, (void *)db);
  cr_assert(sochdb_last_error()[0] != '\0', "%s: no sochdb_last_error() detail", what);
}

static void region_path_of(const char *dir, char *out, size_t n)
{
  int rc = shm_region_path(dir, out, n);
  cr_assert_eq(rc, SOCHDB_OK, "shm_region_path(%s): %s (%s)", dir, sochdb_strerror(rc), sochdb_last_error());
}

static void file_write(const char *path, off_t off, const void *buf, size_t n)
{
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  cr_assert_geq(fd, 0, "open %s: %s", path, strerror(errno));
  ssize_t w = pwrite(fd, buf, n, off);
  close(fd);
  cr_assert_eq(w, (ssize_t)n, "pwrite %s at %lld: %s", path, (long long)off, strerror(errno));
}

static void file_read(const char *path, off_t off, void *buf, size_t n)
{
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  cr_assert_geq(fd, 0, "open %s: %s", path, strerror(errno));
  ssize_t got = pread(fd, buf, n, off);
  close(fd);
  cr_assert_eq(got, (ssize_t)n, "pread %s at %lld: %s", path, (long long)off, strerror(errno));
}

static void flip_byte(const char *path, off_t off)
{
  unsigned char b;
  file_read(path, off, &b, 1);
  b ^= 0x5a;
  file_write(path, off, &b, 1);
}

static void write_id_file(const char *dir, const void *bytes, size_t n)
{
  char p[4200];
  snprintf(p, sizeof p, "%s/sochdb.id", dir);
  int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  cr_assert_geq(fd, 0, "open %s: %s", p, strerror(errno));
  ssize_t w = n ? write(fd, bytes, n) : 0;
  close(fd);
  cr_assert_eq(w, (ssize_t)n, "write %s", p);
}

static int path_exists(const char *p)
{
  struct stat st;
  return stat(p, &st) == 0;
}

/* A database in a fresh subdirectory with one committed key; returns the
** directory (tracked) and the region path; the handle is closed. */
static char *make_db_with_key(const char *name, char *region, size_t n)
{
  char *dir = sub(name);
  sochdb_options o = small_opts();
  sochdb *db = tu_open_with(dir, &o);
  tu_commit_kv(db, "key", "value", SOCHDB_SYNC);   /* durable: some tests rebuild from the WAL */
  snprintf(region, n, "%s", sochdb_region_path(db));
  sochdb_close(db);
  tu_stop_daemon(dir);            /* the tests tamper with a region nobody may be attached to */
  return dir;
}

/* What an attached process holds, for as long as it is attached: its
** slot's lock, one byte of the region file (shm/slots.c). A region this
** library cannot attach is refused while one is held, and rebuilt once
** none is. Returns the descriptor that holds it; closing it lets go. */
static int hold_a_slot(const char *region)
{
  int fd = open(region, O_RDWR | O_CLOEXEC);
  cr_assert_geq(fd, 0, "open %s: %s", region, strerror(errno));
  struct flock fl;
  memset(&fl, 0, sizeof fl);
  fl.l_type = F_WRLCK;
  fl.l_whence = SEEK_SET;
  fl.l_start = 7;
  fl.l_len = 1;
  cr_assert_eq(fcntl(fd, F_OFD_SETLK, &fl), 0, "lock slot 7 of %s: %s", region, strerror(errno));
  return fd;
}

/* The region of dir, opened with o, is a new one (rebuilt from the log,
** which holds make_db_with_key's key) of this library's layout. */
static void expect_rebuilt(const char *dir, const sochdb_options *o, const char *what)
{
  sochdb *db = tu_open_with(dir, o);
  cr_assert_eq(db->region.hdr->layout_version, SHM_LAYOUT_VERSION, "%s: not rebuilt", what);
  char buf[16];
  cr_assert_eq(tu_read_str(db, "key", buf, sizeof buf), SOCHDB_OK, "%s: the key is not back from the log", what);
  cr_assert_str_eq(buf, "value", "%s: value", what);
  sochdb_close(db);
}

/* ------------------------------------------------------------ path */

Test(region, path_is_named_after_the_directory_in_SOCHDB_SHM_DIR)
{
  const char *saved_env = getenv("SOCHDB_SHM_DIR");
  char *saved = saved_env ? strdup(saved_env) : NULL;
  char *shmdir = tu_tmpdir();
  cr_assert_not_null(shmdir, "mkdtemp");
  struct stat st;
  cr_assert_eq(stat(tu_db_dir, &st), 0, "stat");
  char want[4096], got[4096];

  setenv("SOCHDB_SHM_DIR", shmdir, 1);
  snprintf(want, sizeof want, "%s/sochdb-%llx-%llx.region", shmdir, (unsigned long long)st.st_dev,
           (unsigned long long)st.st_ino);
  cr_assert_eq(shm_region_path(tu_db_dir, got, sizeof got), SOCHDB_OK, "shm_region_path");
  cr_assert_str_eq(got, want, "region path with SOCHDB_SHM_DIR");

  sochdb_options o = small_opts();
  sochdb *db = tu_open_with(tu_db_dir, &o);
  cr_assert_str_eq(sochdb_region_path(db), want, "sochdb_region_path");
  cr_assert(path_exists(want), "the region file %s exists", want);
  struct stat rs;
  cr_assert_eq(stat(want, &rs), 0, "stat region");
  cr_assert_eq((uint64_t)rs.st_size, (uint64_t)SMALL_REGION, "region file size %lld", (long long)rs.st_size);
  sochdb_close(db);
  cr_assert(path_exists(want), "the region outlives its last handle (a cache of the directory)");
  unlink(want);

  unsetenv("SOCHDB_SHM_DIR");
  snprintf(want, sizeof want, "/dev/shm/sochdb-%llx-%llx.region", (unsigned long long)st.st_dev,
           (unsigned long long)st.st_ino);
  cr_assert_eq(shm_region_path(tu_db_dir, got, sizeof got), SOCHDB_OK, "shm_region_path");
  cr_assert_str_eq(got, want, "default region directory");
  setenv("SOCHDB_SHM_DIR", "", 1);
  cr_assert_eq(shm_region_path(tu_db_dir, got, sizeof got), SOCHDB_OK, "shm_region_path");
  cr_assert_str_eq(got, want, "an empty SOCHDB_SHM_DIR means /dev/shm");

  /* too long for the buffer, or for a path */
  setenv("SOCHDB_SHM_DIR", shmdir, 1);
  sdb_clear_error();
  cr_assert_eq(shm_region_path(tu_db_dir, got, 16), SOCHDB_INVALID, "a 16-byte buffer is too small");
  cr_assert(sochdb_last_error()[0], "detail");
  static char longdir[5000];
  memset(longdir, 'd', sizeof longdir - 1);
  longdir[0] = '/';
  setenv("SOCHDB_SHM_DIR", longdir, 1);
  cr_assert_eq(shm_region_path(tu_db_dir, got, sizeof got), SOCHDB_INVALID, "a 5000-byte SOCHDB_SHM_DIR");
  sochdb *bad = NULL;
  int rc = sochdb_open(tu_db_dir, &o, &bad);
  cr_assert_eq(rc, SOCHDB_INVALID, "sochdb_open with a 5000-byte SOCHDB_SHM_DIR: %s", sochdb_strerror(rc));
  setenv("SOCHDB_SHM_DIR", shmdir, 1);

  /* a directory that does not exist */
  char missing[4200];
  snprintf(missing, sizeof missing, "%s/nope", tu_db_dir);
  errno = 0;
  cr_assert_eq(shm_region_path(missing, got, sizeof got), SOCHDB_IO, "stat of a missing directory");
  cr_assert_eq(errno, ENOENT, "errno kept: %d", errno);

  if (saved)
    setenv("SOCHDB_SHM_DIR", saved, 1);
  else
    unsetenv("SOCHDB_SHM_DIR");
  free(saved);
  tu_rmrf(shmdir);
  free(shmdir);
}

/* ------------------------------------------------------------ create / attach */

Test(region, a_second_open_attaches_to_the_same_region)
{
  sochdb_options o = small_opts();
  sochdb *a = tu_open_with(tu_db_dir, &o);
  sochdb_options other = small_opts();
  other.region_bytes = 32u << 20;     /* only the creator's sizes matter */
  other.memtable_bytes = 2u << 20;
  sochdb *b = tu_open_with(tu_db_dir, &other);
  cr_assert_str_eq(sochdb_region_path(a), sochdb_region_path(b), "same region path");
  struct stat sa, sb;
  cr_assert_eq(fstat(a->region.fd, &sa), 0, "fstat");
  cr_assert_eq(fstat(b->region.fd, &sb), 0, "fstat");
  cr_assert(sa.st_ino == sb.st_ino && sa.st_dev == sb.st_dev, "both handles map the same file");
  cr_assert_neq(a->slot, b->slot, "two handles, two slots");
  cr_assert_eq(b->region.hdr->region_bytes, (uint64_t)SMALL_REGION, "the attacher sees the creator's size, not %llu",
               (unsigned long long)b->region.hdr->region_bytes);
  cr_assert_eq(b->region.hdr->memtable_bytes, (uint64_t)SMALL_MEMTABLE, "the creator's memtable size");
  cr_assert_eq(b->region.size, (size_t)SMALL_REGION, "the attacher maps the whole region: %zu", b->region.size);

  tu_commit_kv(a, "from-a", "1", SOCHDB_ASYNC);
  char buf[16];
  cr_assert_eq(tu_read_str(b, "from-a", buf, sizeof buf), SOCHDB_OK, "b reads a's commit");
  cr_assert_str_eq(buf, "1", "value");
  tu_commit_kv(b, "from-b", "2", SOCHDB_ASYNC);
  cr_assert_eq(tu_read_str(a, "from-b", buf, sizeof buf), SOCHDB_OK, "a reads b's commit");
  cr_assert_str_eq(buf, "2", "value");
  cr_assert_eq(seqring_published(&a->region), 3u, "two commits on one sequence");
  cr_assert_eq(seqring_published(&b->region), 3u, "both mappings agree");
  sochdb_close(a);
  /* b keeps working after a is gone; a reopen sees everything */
  tu_commit_kv(b, "after-a", "3", SOCHDB_ASYNC);
  sochdb_close(b);
  sochdb *c = tu_open_with(tu_db_dir, &o);
  cr_assert_eq(tu_read_str(c, "from-a", buf, sizeof buf), SOCHDB_OK, "the region keeps its data between handles");
  cr_assert_eq(tu_read_str(c, "after-a", buf, sizeof buf), SOCHDB_OK, "and the later commit");
  sochdb_close(c);
}

static void check_header(sochdb *db, const char *dir, uint64_t region_bytes, uint64_t memtable_bytes)
{
  const struct shm_header *h = db->region.hdr;
  cr_assert_eq(__atomic_load_n(&h->magic, __ATOMIC_ACQUIRE), SHM_MAGIC, "magic");
  cr_assert_eq(h->layout_version, SHM_LAYOUT_VERSION, "layout_version %u", h->layout_version);
  cr_assert_eq(h->header_bytes, SHM_HEADER_BYTES, "header_bytes %u", h->header_bytes);
  cr_assert_eq(h->region_bytes, region_bytes, "region_bytes %llu", (unsigned long long)h->region_bytes);
  cr_assert_eq(h->memtable_bytes, memtable_bytes, "memtable_bytes %llu", (unsigned long long)h->memtable_bytes);
  cr_assert_eq(h->n_slots, SHM_MAX_SLOTS, "n_slots %u", h->n_slots);
  cr_assert_eq(h->slots_off, (uint64_t)SHM_HEADER_BYTES, "the slots follow the header");
  cr_assert_geq(h->ring_off, h->slots_off + slots_section_bytes(), "ring after the slots");
  cr_assert_geq(h->memtables_off, h->ring_off + seqring_section_bytes(), "memtable table after the ring");
  cr_assert_eq(h->ring_off % 4096, 0u, "ring_off page aligned");
  cr_assert_eq(h->memtables_off % 4096, 0u, "memtables_off page aligned");
  uint64_t first = shm_layout_arena_off(h, 0);
  cr_assert_eq(first % (2u << 20), 0u, "arenas are 2 MiB aligned: %llu", (unsigned long long)first);
  uint64_t fit = (region_bytes - first) / memtable_bytes;
  uint64_t want_n = fit > SHM_MAX_MEMTABLES ? SHM_MAX_MEMTABLES : fit;
  cr_assert_eq(h->n_memtables, want_n, "n_memtables %u, expected %llu", h->n_memtables, (unsigned long long)want_n);
  cr_assert(h->n_memtables >= 2 && h->n_memtables <= SHM_MAX_MEMTABLES, "n_memtables %u out of [2, %u]",
            h->n_memtables, SHM_MAX_MEMTABLES);
  cr_assert_leq(shm_layout_arena_off(h, h->n_memtables), h->region_bytes, "the last arena fits in the region");
  uint8_t id[16];
  char idp[4200];
  snprintf(idp, sizeof idp, "%s/sochdb.id", dir);
  file_read(idp, 0, id, sizeof id);
  cr_assert_eq(memcmp(h->db_id, id, 16), 0, "db_id is the directory's sochdb.id");
  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  cr_assert(h->created_unix_ns > 0 && h->created_unix_ns <= (uint64_t)now.tv_sec * 1000000000ull + (uint64_t)now.tv_nsec,
            "created_unix_ns %llu", (unsigned long long)h->created_unix_ns);
  cr_assert_neq(h->checksum, 0u, "checksum set");
  cr_assert_eq(atomic_load(&h->published_seq), 1u, "published_seq of a new region");
  cr_assert_eq(atomic_load(&h->next_seq), 2u, "next_seq of a new region");
  cr_assert_eq(atomic_load(&h->horizon), 1u, "horizon of a new region");
  sochdb_stats s;
  cr_assert_eq(sochdb_stats_get(db, &s), SOCHDB_OK, "stats");
  cr_assert_eq(s.region_bytes, region_bytes, "stats region_bytes");
  cr_assert_eq(s.memtable_bytes, memtable_bytes, "stats memtable_bytes");
  cr_assert_eq(s.memtables_total, h->n_memtables, "stats memtables_total");
  cr_assert_eq(s.memtables_in_use, 1u, "one live memtable in a new region");
  struct stat st;
  cr_assert_eq(fstat(db->region.fd, &st), 0, "fstat");
  cr_assert_eq((uint64_t)st.st_size, region_bytes, "file size %lld", (long long)st.st_size);
}

Test(region, header_fields)
{
  sochdb_options o = small_opts();
  o.region_bytes = 16u << 20;
  char *d1 = sub("small");
  sochdb *db = tu_open_with(d1, &o);
  check_header(db, d1, 16u << 20, 1u << 20);
  const struct shm_header *h = db->region.hdr;
  cr_assert_eq(h->n_memtables, ((16u << 20) - shm_layout_arena_off(h, 0)) / (1u << 20),
               "16 MiB with 1 MiB memtables after %llu bytes of tables: %u",
               (unsigned long long)shm_layout_arena_off(h, 0), h->n_memtables);
  cr_assert_geq(h->n_memtables, 8u, "the tables take at most half of a 16 MiB region");
  sochdb_close(db);

  char *d2 = sub("defaults");
  db = tu_open_with(d2, NULL);
  check_header(db, d2, SHM_DEFAULT_REGION_BYTES, SHM_DEFAULT_MEMTABLE_BYTES);
  sochdb_close(db);

  char *d3 = sub("capped");
  o.region_bytes = 128u << 20;      /* room for 124 arenas of 1 MiB: capped at SHM_MAX_MEMTABLES */
  db = tu_open_with(d3, &o);
  check_header(db, d3, 128u << 20, 1u << 20);
  cr_assert_eq(db->region.hdr->n_memtables, SHM_MAX_MEMTABLES, "capped: %u", db->region.hdr->n_memtables);
  sochdb_close(db);

  char *d4 = sub("two");
  o.region_bytes = 6u << 20;        /* exactly two arenas */
  db = tu_open_with(d4, &o);
  check_header(db, d4, 6u << 20, 1u << 20);
  cr_assert_eq(db->region.hdr->n_memtables, 2u, "two: %u", db->region.hdr->n_memtables);
  sochdb_close(db);
  free(d1);
  free(d2);
  free(d3);
  free(d4);
}

/* Links inside the memtables are 32-bit references in 8-byte units
** (region.h, shm_ref): the memtables of one region span at most 32 GiB, so a
** larger region holds fewer of its largest memtables, and the last 8 bytes of
** the last arena still have a reference of their own. The region is sparse:
** of the arenas, only the first one's head and hash index (16 MiB) are written. */
Test(region, memtables_span_at_most_32_gib)
{
  sochdb_options o = small_opts();
  o.region_bytes = 40ull << 30;
  o.memtable_bytes = 4ull << 30;
  char *d = sub("huge");
  sochdb *db = tu_open_with(d, &o);
  shm_region *r = &db->region;
  const struct shm_header *h = r->hdr;
  cr_assert_eq(h->n_memtables, 7u, "4 GiB memtables in 40 GiB: %u, not the 8 that would pass 32 GiB", h->n_memtables);
  uint64_t first = shm_layout_arena_off(h, 0);
  uint64_t last = shm_layout_arena_off(h, h->n_memtables - 1) + h->memtable_bytes - 8;
  cr_assert_eq(shm_off_ref(r, first), 1u, "the first arena's first 8 bytes are reference 1 (0 means none)");
  shm_ref ref = shm_off_ref(r, last);
  cr_assert_neq(ref, 0u, "the last 8 bytes of the last arena have a reference");
  cr_assert_eq(shm_ref_off(r, ref), last, "reference %u names %#llx, not %#llx", ref,
               (unsigned long long)shm_ref_off(r, ref), (unsigned long long)last);
  cr_assert_eq(shm_ref_off(r, 0), 0u, "reference 0 is none");
  sochdb_close(db);
  free(d);
}

/* ------------------------------------------------------------ refusing bad regions */

/* After an upgrade that changes the layout, the region of the old version
** is refused while any process still uses it (an old one, or sochdbd), and
** the first open after they have all stopped rebuilds it from the files: no
** one has to find and remove it by hand. */
Test(region, another_layout_version_is_refused_while_in_use_and_rebuilt_after)
{
  char path[4096];
  char *dir = make_db_with_key("v", path, sizeof path);
  uint32_t v;
  const off_t off = (off_t)offsetof(struct shm_header, layout_version);
  file_read(path, off, &v, sizeof v);
  cr_assert_eq(v, SHM_LAYOUT_VERSION, "layout_version on disk");
  uint32_t other = SHM_LAYOUT_VERSION + 1;
  file_write(path, off, &other, sizeof other);
  sochdb_options o = small_opts();
  int holder = hold_a_slot(path);
  open_fails(dir, &o, SOCHDB_VERSION, "layout_version + 1");
  cr_assert(strstr(sochdb_last_error(), "version") != NULL, "detail: \"%s\"", sochdb_last_error());
  cr_assert(strstr(sochdb_last_error(), path) != NULL && strstr(sochdb_last_error(), "processes use it") != NULL &&
            strstr(sochdb_last_error(), "rebuilds it") != NULL,
            "the message does not say which file, that it is in use and what then: \"%s\"", sochdb_last_error());
  other = 0;
  file_write(path, off, &other, sizeof other);
  open_fails(dir, &o, SOCHDB_VERSION, "layout_version 0");
  /* refused, not rebuilt: put the version back and the data is all there */
  file_write(path, off, &v, sizeof v);
  sochdb *db = tu_open_with(dir, &o);
  char buf[16];
  cr_assert_eq(tu_read_str(db, "key", buf, sizeof buf), SOCHDB_OK, "the refused region was not touched");
  cr_assert_str_eq(buf, "value", "value");
  tu_commit_kv(db, "unlogged", "x", SOCHDB_ASYNC);   /* the old region's own: lost with it unless logged */
  sochdb_close(db);
  tu_stop_daemon(dir);   /* logs it */
  /* every process gone: the next open rebuilds it from the log */
  file_write(path, off, &other, sizeof other);
  close(holder);
  expect_rebuilt(dir, &o, "layout_version 0, no process left");
  db = tu_open_with(dir, &o);
  cr_assert_eq(tu_read_str(db, "unlogged", buf, sizeof buf), SOCHDB_OK, "a commit the daemon logged at its exit");
  sochdb_close(db);
  free(dir);
}

/* A refused region was left as it was: once its header is put back, the
** next open attaches it and the key make_db_with_key wrote is there. */
static void expect_refused_region_intact(const char *dir, const sochdb_options *o)
{
  sochdb *db = tu_open_with(dir, o);
  char buf[16];
  cr_assert_eq(tu_read_str(db, "key", buf, sizeof buf), SOCHDB_OK, "the region survives being refused");
  cr_assert_str_eq(buf, "value", "the key's value");
  sochdb_close(db);
}

Test(region, every_flipped_header_byte_is_detected)
{
  char path[4096];
  char *dir = make_db_with_key("flip", path, sizeof path);
  sochdb_options o = small_opts();
  int holder = hold_a_slot(path);   /* in use: refused, never rebuilt */
  const size_t lv = offsetof(struct shm_header, layout_version);
  const size_t end = offsetof(struct shm_header, checksum) + sizeof(uint64_t);
  for (size_t b = lv; b < end; b++) {
    flip_byte(path, (off_t)b);
    char what[96];
    snprintf(what, sizeof what, "header byte %zu flipped", b);
    int want = b < lv + sizeof(uint32_t) ? SOCHDB_VERSION : SOCHDB_CORRUPT;
    open_fails(dir, &o, want, what);
    flip_byte(path, (off_t)b);   /* undo */
  }
  expect_refused_region_intact(dir, &o);
  close(holder);
  free(dir);
}

/* Write the header page orig to path with n bytes at field replaced by
** value and the checksum made to match. */
static void write_header_with(const char *path, const uint8_t *orig, size_t field, const void *value, size_t n)
{
  _Alignas(64) uint8_t h[4096];
  memcpy(h, orig, sizeof h);
  memcpy(h + field, value, n);
  uint64_t sum = shm_header_checksum((const struct shm_header *)h);
  memcpy(h + offsetof(struct shm_header, checksum), &sum, sizeof sum);
  file_write(path, 0, h, sizeof h);
}

/* The checksum's seed is no secret: a header rewritten with sections moved
** and its checksum recomputed must still be refused, never followed out
** of the mapping (a process then wrote through ring_off = region_bytes - 8).
** So must one naming another size of the commit-record ring, whose entries
** would then run into the next section or leave commits unread. */
Test(region, a_header_with_moved_sections_is_refused_despite_its_checksum)
{
  char path[4096];
  char *dir = make_db_with_key("moved", path, sizeof path);
  sochdb_options o = small_opts();
  int holder = hold_a_slot(path);
  static const size_t fields[] = { offsetof(struct shm_header, slots_off), offsetof(struct shm_header, ring_off),
                                   offsetof(struct shm_header, rec_ring_off), offsetof(struct shm_header, files_off),
                                   offsetof(struct shm_header, cache_off), offsetof(struct shm_header, memtables_off),
                                   offsetof(struct shm_header, cache_bytes) };
  _Alignas(64) uint8_t orig[4096];   /* read as a struct shm_header below */
  file_read(path, 0, orig, sizeof orig);
  const uint64_t moved = SMALL_REGION - 8;
  for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
    write_header_with(path, orig, fields[i], &moved, sizeof moved);
    char what[64];
    snprintf(what, sizeof what, "header field at %zu moved", fields[i]);
    open_fails(dir, &o, SOCHDB_CORRUPT, what);
  }
  const uint32_t entries = ((const struct shm_header *)orig)->rec_ring_entries;
  const uint32_t sizes[] = { entries * 2, entries / 2, entries + 1, 0 };
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    write_header_with(path, orig, offsetof(struct shm_header, rec_ring_entries), &sizes[i], sizeof sizes[i]);
    char what[80];
    snprintf(what, sizeof what, "a record ring of %u entries for %u", sizes[i], entries);
    open_fails(dir, &o, SOCHDB_CORRUPT, what);
  }
  file_write(path, 0, orig, sizeof orig);
  expect_refused_region_intact(dir, &o);
  /* and once nobody uses it, such a header is rebuilt */
  tu_stop_daemon(dir);
  write_header_with(path, orig, fields[0], &moved, sizeof moved);
  close(holder);
  expect_rebuilt(dir, &o, "a moved section, no process left");
  free(dir);
}

/* The shared block cache's own header (its magic, set count and data
** offset) is written once, when the region is made, outside the header's
** checksum: a flipped bit there sent every lookup, insert and reap outside
** the cache (a SIGSEGV at the first SSTable read; an insert could write into
** a memtable). An opener checks it as it checks the layout. */
Test(region, a_damaged_block_cache_header_is_refused)
{
  char path[4096];
  char *dir = make_db_with_key("cachehdr", path, sizeof path);
  sochdb_options o = small_opts();
  int holder = hold_a_slot(path);
  uint64_t cache_off, cache_bytes;
  file_read(path, offsetof(struct shm_header, cache_off), &cache_off, sizeof cache_off);
  file_read(path, offsetof(struct shm_header, cache_bytes), &cache_bytes, sizeof cache_bytes);
  cr_assert(cache_off && cache_bytes, "the test's region has a block cache");
  static const struct { off_t at; const char *name; } words[] = { { 0, "magic" }, { 8, "set count" },
                                                                  { 16, "data offset" } };
  for (size_t i = 0; i < sizeof words / sizeof words[0]; i++) {
    for (int bit = 1; bit < 8; bit += 6) {   /* a low bit and a high one of the word's first byte */
      off_t at = (off_t)cache_off + words[i].at;
      unsigned char b;
      file_read(path, at, &b, 1);
      unsigned char flipped = (unsigned char)(b ^ (1u << bit));
      file_write(path, at, &flipped, 1);
      char what[96];
      snprintf(what, sizeof what, "the block cache's %s, bit %d flipped", words[i].name, bit);
      open_fails(dir, &o, SOCHDB_CORRUPT, what);
      cr_assert(strstr(sochdb_last_error(), "block cache"), "%s: %s", what, sochdb_last_error());
      file_write(path, at, &b, 1);
    }
  }
  expect_refused_region_intact(dir, &o);
  tu_stop_daemon(dir);
  unsigned char b;
  file_read(path, (off_t)cache_off, &b, 1);
  b ^= 2;
  file_write(path, (off_t)cache_off, &b, 1);
  close(holder);
  expect_rebuilt(dir, &o, "a damaged block cache header, no process left");
  free(dir);
}

Test(region, a_region_of_the_wrong_size_is_corrupt)
{
  char path[4096];
  char *dir = make_db_with_key("size", path, sizeof path);
  int holder = hold_a_slot(path);
  cr_assert_eq(truncate(path, (off_t)SMALL_REGION + 4096), 0, "grow the region file");
  sochdb_options o = small_opts();
  open_fails(dir, &o, SOCHDB_CORRUPT, "region file larger than its header says");
  cr_assert_eq(truncate(path, (off_t)SMALL_REGION - 4096), 0, "shrink the region file");
  open_fails(dir, &o, SOCHDB_CORRUPT, "region file smaller than its header says");
  close(holder);
  expect_rebuilt(dir, &o, "the wrong size, no process left");
  free(dir);
}

/* `sochdb destroy` and `backup` find nobody attached, stop the daemon, then
** remove the region: a process that attached in between was left on a region
** nobody else would open (its commits unseen, never logged). The removal
** they use refuses while a slot is held. */
Test(region, a_region_is_removed_for_destroy_only_while_no_slot_is_held)
{
  char path[4096];
  char *dir = make_db_with_key("unused", path, sizeof path);
  int holder = hold_a_slot(path);
  errno = 0;
  cr_assert_eq(shm_region_unlink_path(path, 1), -1, "removed while a slot is held");
  cr_assert_eq(errno, EBUSY, "errno %d (%s), not EBUSY", errno, strerror(errno));
  cr_assert_eq(access(path, F_OK), 0, "the region in use is gone");
  close(holder);
  cr_assert_eq(shm_region_unlink_path(path, 1), 1, "not removed once no slot is held: %s", strerror(errno));
  cr_assert_neq(access(path, F_OK), 0, "the region is still there");
  free(dir);
}

Test(region, a_foreign_file_at_the_region_path_is_corrupt)
{
  char path[4096];
  region_path_of(tu_db_dir, path, sizeof path);
  /* not a sochdb region: garbage, larger than a header */
  static unsigned char junk[3 * 4096];
  for (size_t i = 0; i < sizeof junk; i++)
    junk[i] = (unsigned char)(i * 131u + 7u);
  unlink(path);   /* named after our fresh directory: anything there is a leftover */
  int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  cr_assert_geq(fd, 0, "create %s: %s", path, strerror(errno));
  cr_assert_eq(write(fd, junk, sizeof junk), (ssize_t)sizeof junk, "write");
  close(fd);
  sochdb_options o = small_opts();
  open_fails(tu_db_dir, &o, SOCHDB_CORRUPT, "garbage at the region path");
  cr_assert(strstr(sochdb_last_error(), "magic") != NULL, "detail: \"%s\"", sochdb_last_error());
  static unsigned char back[sizeof junk];
  file_read(path, 0, back, sizeof back);
  cr_assert_eq(memcmp(junk, back, sizeof junk), 0, "the foreign file was modified");
  struct stat st;
  cr_assert_eq(stat(path, &st), 0, "stat");
  cr_assert_eq(st.st_size, (off_t)sizeof junk, "the foreign file was resized to %lld", (long long)st.st_size);
  unlink(path);

  /* a real region whose start was overwritten (a program's output written
  ** into it): refused in use, rebuilt after, as its size and id say it is ours */
  char rpath[4096];
  char *dir = make_db_with_key("magic", rpath, sizeof rpath);
  int holder = hold_a_slot(rpath);
  static const char line[] = "sochdb: key 'abc' not found\n";
  file_write(rpath, 0, line, sizeof line - 1);
  open_fails(dir, &o, SOCHDB_CORRUPT, "overwritten magic");
  close(holder);
  expect_rebuilt(dir, &o, "an overwritten start, no process left");
  free(dir);
}

/* ------------------------------------------------------------ rebuilding */

Test(region, a_region_without_magic_is_initialised_again)
{
  char path[4096];
  char *dir = make_db_with_key("half", path, sizeof path);
  struct stat before;
  cr_assert_eq(stat(path, &before), 0, "stat");
  uint64_t zero = 0;
  file_write(path, 0, &zero, sizeof zero);   /* the creator "died" before publishing the magic */
  sochdb_options o = small_opts();
  o.region_bytes = 16u << 20;               /* the re-initialiser's sizes apply */
  sochdb *db = tu_open_with(dir, &o);
  const struct shm_header *h = db->region.hdr;
  cr_assert_eq(__atomic_load_n(&h->magic, __ATOMIC_ACQUIRE), SHM_MAGIC, "magic published again");
  cr_assert_eq(h->region_bytes, (uint64_t)(16u << 20), "re-initialised with the opener's size: %llu",
               (unsigned long long)h->region_bytes);
  /* Nothing of the half-made region is trusted: it is rebuilt from the WAL,
  ** where the commit made before is durable. */
  cr_assert_geq(seqring_published(&db->region), 2u, "the sequence resumes after the replayed commit");
  char buf[16];
  cr_assert_eq(tu_read_str(db, "key", buf, sizeof buf), SOCHDB_OK, "the durable commit is replayed");
  cr_assert_str_eq(buf, "value", "replayed value");
  tu_commit_kv(db, "key", "again", SOCHDB_ASYNC);
  sochdb_close(db);
  db = tu_open_with(dir, &o);
  cr_assert_eq(tu_read_str(db, "key", buf, sizeof buf), SOCHDB_OK, "the re-made region works");
  cr_assert_str_eq(buf, "again", "value");
  sochdb_close(db);
  free(dir);
}

/* Eight zero bytes over the start of a region in use (a program's buffer
** written there) look like a creator that died before publishing its
** magic. Such a creator never held a slot (an opener takes its slot after
** the magic is out), so with a slot held it is damage: re-initialising the
** file in place (truncating it) would pull the memory of every attached
** process and sochdbd from under them (SIGBUS) and drop what they hold.
** Refused while in use, rebuilt after, like the other damage. */
Test(region, a_region_without_magic_is_refused_while_in_use)
{
  char path[4096];
  char *dir = make_db_with_key("zeroed", path, sizeof path);
  struct stat before;
  cr_assert_eq(stat(path, &before), 0, "stat");
  int holder = hold_a_slot(path);
  uint64_t zero = 0;
  file_write(path, 0, &zero, sizeof zero);
  sochdb_options o = small_opts();
  o.region_bytes = 16u << 20;   /* a re-initialiser would resize it: seen below */
  open_fails(dir, &o, SOCHDB_CORRUPT, "no magic while a slot is held");
  cr_assert(strstr(sochdb_last_error(), "processes use it") != NULL, "detail: \"%s\"", sochdb_last_error());
  struct stat after;
  cr_assert_eq(stat(path, &after), 0, "stat");
  cr_assert_eq(after.st_ino, before.st_ino, "the region in use was replaced");
  cr_assert_eq(after.st_size, before.st_size, "the region in use was re-initialised in place (%lld bytes, was %lld)",
               (long long)after.st_size, (long long)before.st_size);
  uint64_t region_bytes;
  file_read(path, (off_t)offsetof(struct shm_header, region_bytes), &region_bytes, sizeof region_bytes);
  cr_assert_eq(region_bytes, (uint64_t)before.st_size, "the header of the region in use was rewritten");
  close(holder);
  expect_rebuilt(dir, &o, "no magic, no process left");
  free(dir);
}

Test(region, a_region_of_another_directory_is_replaced)
{
  char path[4096];
  char *dir = make_db_with_key("stale", path, sizeof path);
  /* keep the old file alive so its inode cannot be reused by the new one */
  int oldfd = open(path, O_RDONLY | O_CLOEXEC);
  cr_assert_geq(oldfd, 0, "open old region");
  struct stat old;
  cr_assert_eq(fstat(oldfd, &old), 0, "fstat");
  /* the directory gets another identity: as if it were deleted and a new
  ** database made on a reused inode */
  uint8_t id[16];
  for (int i = 0; i < 16; i++)
    id[i] = (uint8_t)(0xa0 + i);
  write_id_file(dir, id, sizeof id);
  char wal[4200];
  snprintf(wal, sizeof wal, "%s/wal", dir);
  tu_rmrf(wal);                              /* a new database has no log of the old one */
  tu_remove_manifest(dir);                   /* ... nor its MANIFEST */
  sochdb_options o = small_opts();
  sochdb *db = tu_open_with(dir, &o);
  cr_assert_str_eq(sochdb_region_path(db), path, "same region path");
  struct stat now, held;
  cr_assert_eq(fstat(db->region.fd, &now), 0, "fstat");
  cr_assert_neq(now.st_ino, old.st_ino, "the stale region file (inode %llu) was reused instead of replaced",
                (unsigned long long)old.st_ino);
  cr_assert_eq(fstat(oldfd, &held), 0, "fstat old");
  cr_assert_eq(held.st_nlink, 0u, "the stale region file was unlinked");
  cr_assert_eq(memcmp(db->region.hdr->db_id, id, 16), 0, "the new region carries the new identity");
  char buf[16];
  cr_assert_eq(tu_read_str(db, "key", buf, sizeof buf), SOCHDB_NOTFOUND, "the other directory's data is gone");
  close(oldfd);
  sochdb_close(db);
  free(dir);
}

/* ------------------------------------------------------------ options */

Test(region, options_out_of_range_are_invalid)
{
  char *dir = sub("opts");
  struct { size_t region, memtable; unsigned mode; const char *what; } bad[] = {
    { 8u << 20, 512u << 10, 0, "memtable_bytes 512 KiB (< 1 MiB)" },
    { 8u << 20, (1u << 20) - 4096, 0, "memtable_bytes 1 MiB - 4096" },
    { 8u << 20, (1u << 20) + 1, 0, "memtable_bytes not a multiple of 4096" },
    { 8u << 20, (1u << 20) + 2048, 0, "memtable_bytes 1 MiB + 2048" },
    { 0, (4ull << 30) + 4096, 0, "memtable_bytes above 4 GiB" },
    { (8u << 20) + 100, 1u << 20, 0, "region_bytes not a multiple of 4096" },
    { (1ull << 40) + 4096, 1u << 20, 0, "region_bytes above 1 TiB" },
    { 8u << 20, 1u << 20, 01000, "file_mode with the sticky bit" },
    { 8u << 20, 1u << 20, 04600, "file_mode with setuid" },
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    sochdb_options o;
    memset(&o, 0, sizeof o);
    o.region_bytes = bad[i].region;
    o.memtable_bytes = bad[i].memtable;
    o.file_mode = bad[i].mode;
    open_fails(dir, &o, SOCHDB_INVALID, bad[i].what);
    cr_assert(!path_exists(dir), "%s: the refused open created %s", bad[i].what, dir);
  }
  /* valid options, a region too small for them */
  struct { size_t region, memtable; const char *what; } small[] = {
    { 4u << 20, 1u << 20, "region too small for its tables" },
    { 5u << 20, 1u << 20, "region holding one memtable" },
    { 64u << 20, 32u << 20, "64 MiB region with 32 MiB memtables (one fits)" },
    { 4096, 1u << 20, "one page" },
  };
  for (size_t i = 0; i < sizeof small / sizeof small[0]; i++) {
    sochdb_options o;
    memset(&o, 0, sizeof o);
    o.region_bytes = small[i].region;
    o.memtable_bytes = small[i].memtable;
    open_fails(dir, &o, SOCHDB_INVALID, small[i].what);
    /* refused before anything is made (no region, no directory: one with a
    ** sochdb.id would pass for a database) */
    cr_assert(!path_exists(dir), "%s: the refused open created %s", small[i].what, dir);
  }
  /* none of that gets in the way of a good open */
  sochdb_options o = small_opts();
  o.region_bytes = 6u << 20;
  sochdb *db = tu_open_with(dir, &o);
  cr_assert_eq(db->region.hdr->n_memtables, 2u, "6 MiB holds exactly 2 memtables");
  tu_commit_kv(db, "k", "v", SOCHDB_ASYNC);
  sochdb_close(db);
  free(dir);
}

Test(region, file_modes)
{
  umask(022);
  char *d1 = sub("mode-default");
  sochdb_options o = small_opts();
  sochdb *db = tu_open_with(d1, &o);
  struct stat st;
  cr_assert_eq(stat(sochdb_region_path(db), &st), 0, "stat region");
  cr_assert_eq(st.st_mode & 07777, 0600u, "default region mode %o, expected 0600", (unsigned)(st.st_mode & 07777));
  sochdb_close(db);

  char *d2 = sub("mode-0640");
  o.file_mode = 0640;
  db = tu_open_with(d2, &o);
  cr_assert_eq(stat(sochdb_region_path(db), &st), 0, "stat region");
  cr_assert_eq(st.st_mode & 07777, 0640u, "file_mode 0640: region mode %o", (unsigned)(st.st_mode & 07777));
  char idp[4200];
  snprintf(idp, sizeof idp, "%s/sochdb.id", d2);
  cr_assert_eq(stat(idp, &st), 0, "stat id");
  cr_assert_eq(st.st_mode & 07777, 0640u, "file_mode 0640: sochdb.id mode %o", (unsigned)(st.st_mode & 07777));
  cr_assert_eq(stat(d2, &st), 0, "stat dir");
  cr_assert(S_ISDIR(st.st_mode) && (st.st_mode & 0700) == 0700, "the created directory is usable: %o",
            (unsigned)(st.st_mode & 07777));
  sochdb_close(db);
  free(d1);
  free(d2);
}

/* The modes of every entry of dir and dir/wal: files want_file, directories
** want_dir (the region, elsewhere, is checked by the caller). */
static void expect_modes(const char *dir, unsigned want_file, unsigned want_dir, int depth)
{
  DIR *d = opendir(dir);
  cr_assert_not_null(d, "opendir %s", dir);
  struct dirent *e;
  while ((e = readdir(d))) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
      continue;
    char path[4400];
    int n = snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    cr_assert(n > 0 && (size_t)n < sizeof path, "path of %s in %s too long", e->d_name, dir);
    struct stat st;
    if (lstat(path, &st) != 0 && errno == ENOENT)
      continue;   /* removed since it was listed: a compaction's inputs go once no reader needs them */
    cr_assert_eq(lstat(path, &st), 0, "lstat %s", path);
    unsigned want = S_ISDIR(st.st_mode) ? want_dir : want_file;
    cr_assert_eq(st.st_mode & 07777, want, "%s has mode %o, want %o", path, (unsigned)(st.st_mode & 07777), want);
    if (S_ISDIR(st.st_mode) && depth > 0)
      expect_modes(path, want_file, want_dir, depth - 1);
  }
  closedir(d);
}

/* file_mode is applied exactly to every file and directory the database
** makes, by the library and by its daemon (0660: processes of the group
** attach), and it is the creator's: a later opener's file_mode changes
** nothing, not even the region it rebuilds. */
Test(region, every_file_of_a_database_takes_its_file_mode_exactly)
{
  mode_t old = umask(022);
  char *dir = sub("mode-0660");
  sochdb_options o = small_opts();
  o.file_mode = 0660;
  sochdb *db = tu_open_with(dir, &o);
  for (int i = 0; i < 3; i++) {
    tu_commit_kv(db, "k", "v", SOCHDB_SYNC);
    tu_full_compaction(db);   /* SSTables, a MANIFEST edit, WAL segments */
  }
  struct stat st;
  cr_assert_eq(stat(sochdb_region_path(db), &st), 0, "stat region");
  cr_assert_eq(st.st_mode & 07777, 0660u, "region mode %o", (unsigned)(st.st_mode & 07777));
  cr_assert_eq(stat(dir, &st), 0, "stat dir");
  cr_assert_eq(st.st_mode & 07777, 0770u, "the directory's mode %o", (unsigned)(st.st_mode & 07777));
  expect_modes(dir, 0660, 0770, 1);
  sochdb_close(db);
  cr_assert_eq(sdb_daemon_stop(dir, SIGTERM, 10000), SOCHDB_OK, "stop the daemon");

  tu_remove_region(dir);
  o.file_mode = 0600;   /* a later opener's own choice: the database keeps its creator's */
  db = tu_open_with(dir, &o);
  tu_commit_kv(db, "k", "v2", SOCHDB_SYNC);
  cr_assert_eq(stat(sochdb_region_path(db), &st), 0, "stat region");
  cr_assert_eq(st.st_mode & 07777, 0660u, "the rebuilt region's mode %o", (unsigned)(st.st_mode & 07777));
  expect_modes(dir, 0660, 0770, 1);
  sochdb_close(db);
  umask(old);
  free(dir);
}

/* ------------------------------------------------------------ the directory */

Test(region, a_missing_directory_with_create_if_missing_negative_is_notfound)
{
  char *dir = sub("absent");
  sochdb_options o = small_opts();
  o.create_if_missing = -1;
  open_fails(dir, &o, SOCHDB_NOTFOUND, "missing directory, create_if_missing = -1");
  cr_assert(!path_exists(dir), "the directory was created anyway");

  /* an existing directory that is not a database */
  cr_assert_eq(mkdir(dir, 0700), 0, "mkdir");
  char idp[4200], path[4096];
  region_path_of(dir, path, sizeof path);
  unlink(path);   /* named after our fresh directory: anything there is a leftover */
  open_fails(dir, &o, SOCHDB_NOTFOUND, "empty directory, create_if_missing = -1");
  snprintf(idp, sizeof idp, "%s/sochdb.id", dir);
  cr_assert(!path_exists(idp), "sochdb.id was created anyway");
  cr_assert(!path_exists(path), "a region was created anyway");

  /* 0 is the default: create */
  o.create_if_missing = 0;
  sochdb *db = tu_open_with(dir, &o);
  sochdb_close(db);
  o.create_if_missing = -1;
  db = tu_open_with(dir, &o);   /* exists now */
  sochdb_close(db);
  free(dir);
}

Test(region, a_regular_file_as_the_directory_is_invalid)
{
  char *f = sub("plain-file");
  int fd = open(f, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  cr_assert_geq(fd, 0, "create %s", f);
  close(fd);
  sochdb_options o = small_opts();
  open_fails(f, &o, SOCHDB_INVALID, "a regular file as the database directory");
  o.create_if_missing = -1;
  open_fails(f, &o, SOCHDB_INVALID, "a regular file, create_if_missing = -1");
  free(f);
}

Test(region, a_damaged_identity_file_is_corrupt)
{
  char path[4096];
  char *dir = make_db_with_key("id", path, sizeof path);
  char idp[4200];
  snprintf(idp, sizeof idp, "%s/sochdb.id", dir);
  uint8_t good[16];
  file_read(idp, 0, good, sizeof good);
  sochdb_options o = small_opts();
  static const size_t sizes[] = { 0, 1, 5, 15, 17, 32 };
  uint8_t bytes[32];
  memset(bytes, 0x33, sizeof bytes);
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    write_id_file(dir, bytes, sizes[i]);
    char what[64];
    snprintf(what, sizeof what, "a %zu-byte sochdb.id", sizes[i]);
    open_fails(dir, &o, SOCHDB_CORRUPT, what);
  }
  write_id_file(dir, good, sizeof good);
  sochdb *db = tu_open_with(dir, &o);
  char buf[16];
  cr_assert_eq(tu_read_str(db, "key", buf, sizeof buf), SOCHDB_OK, "the region was kept through the refusals");
  sochdb_close(db);
  free(dir);
}

/* ------------------------------------------------------------ concurrent creation */

#define NOPENERS 8

struct opener {
  const char *dir;
  pthread_barrier_t *bar;
  sochdb *db;
  int rc;
  char err[512];
};

static void *opener_thread(void *p)
{
  struct opener *a = p;
  sochdb_options o = small_opts();
  pthread_barrier_wait(a->bar);
  a->rc = sochdb_open(a->dir, &o, &a->db);
  snprintf(a->err, sizeof a->err, "%s", sochdb_last_error());
  return NULL;
}

/* Round after round, NOPENERS threads open one directory at once. With
** `fresh`, the directory does not exist yet, so they race to make the
** directory, its identity file and the region; otherwise the directory and
** its sochdb.id exist and only the region (unlinked beforehand) is raced for. */
static void race_openers(int rounds, int fresh)
{
  for (int round = 0; round < rounds; round++) {
    char name[32];
    snprintf(name, sizeof name, "race-%d", round);
    char *dir = sub(name);
    if (!fresh) {
      sochdb_options o = small_opts();
      sochdb *db = tu_open_with(dir, &o);
      char p[4096];
      snprintf(p, sizeof p, "%s", sochdb_region_path(db));
      sochdb_close(db);
      cr_assert_eq(unlink(p), 0, "unlink %s", p);
    }
    pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, NOPENERS);
    struct opener a[NOPENERS];
    pthread_t th[NOPENERS];
    for (int i = 0; i < NOPENERS; i++) {
      memset(&a[i], 0, sizeof a[i]);
      a[i].dir = dir;
      a[i].bar = &bar;
      cr_assert_eq(pthread_create(&th[i], NULL, opener_thread, &a[i]), 0, "pthread_create");
    }
    for (int i = 0; i < NOPENERS; i++)
      TU_JOIN(th[i], "an opener");
    pthread_barrier_destroy(&bar);

    for (int i = 0; i < NOPENERS; i++)
      cr_assert_eq(a[i].rc, SOCHDB_OK, "round %d: opener %d of %d failed: %s (%s)", round, i, NOPENERS,
                   sochdb_strerror(a[i].rc), a[i].err);
    char path[4096];
    region_path_of(dir, path, sizeof path);
    struct stat ps;
    cr_assert_eq(stat(path, &ps), 0, "round %d: stat region", round);
    uint8_t id[16];
    char idp[4200];
    snprintf(idp, sizeof idp, "%s/sochdb.id", dir);
    file_read(idp, 0, id, sizeof id);
    for (int i = 0; i < NOPENERS; i++) {
      struct stat st;
      cr_assert_str_eq(sochdb_region_path(a[i].db), path, "round %d: opener %d region path", round, i);
      cr_assert_eq(fstat(a[i].db->region.fd, &st), 0, "fstat");
      cr_assert(st.st_ino == ps.st_ino && st.st_dev == ps.st_dev,
                "round %d: opener %d maps region inode %llu, the path names inode %llu (%s)", round, i,
                (unsigned long long)st.st_ino, (unsigned long long)ps.st_ino,
                st.st_nlink ? "another live file" : "an unlinked file: its region was replaced");
      cr_assert_eq(memcmp(a[i].db->region.hdr->db_id, id, 16), 0,
                   "round %d: opener %d's region carries another identity than sochdb.id", round, i);
      for (int j = 0; j < i; j++)
        cr_assert_neq(a[i].db->slot, a[j].db->slot, "round %d: openers %d and %d share slot %u", round, i, j,
                      a[i].db->slot);
    }
    sochdb_stats s;
    cr_assert_eq(sochdb_stats_get(a[0].db, &s), SOCHDB_OK, "stats");
    cr_assert_eq(s.processes_attached, (uint32_t)NOPENERS, "round %d: %u handles attached to the region",
                 round, s.processes_attached);
    char val[16];
    snprintf(val, sizeof val, "r%d", round);
    tu_commit_kv(a[round % NOPENERS].db, "shared", val, SOCHDB_ASYNC);
    for (int i = 0; i < NOPENERS; i++) {
      char buf[16];
      int rc = tu_read_str(a[i].db, "shared", buf, sizeof buf);
      cr_assert_eq(rc, SOCHDB_OK, "round %d: opener %d does not see the key written by opener %d: %s", round, i,
                   round % NOPENERS, sochdb_strerror(rc));
      cr_assert_str_eq(buf, val, "round %d: opener %d value", round, i);
    }
    for (int i = 0; i < NOPENERS; i++)
      sochdb_close(a[i].db);
    /* no temporary identity file is left behind */
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s/.sochdb.id.%ld", dir, (long)getpid());
    cr_assert(!path_exists(tmp), "round %d: %s left behind", round, tmp);
    free(dir);
  }
}

/* Only the region is created concurrently (the identity file exists). */
Test(region, concurrent_attach_creates_one_region)
{
  race_openers(12, 0);
}

/* Everything is created concurrently: directory, sochdb.id, region. The
** threads of one process are as entitled to race here as processes are
** ("several processes may open the same directory at the same instant";
** a handle may be opened by any thread). */
Test(region, concurrent_creation_makes_one_region)
{
  race_openers(12, 1);
}

/* A region found after a reboot (possible when $SOCHDB_SHM_DIR is on a disk)
** may be torn anywhere: it is not trusted but rebuilt from the WAL, which
** holds every durable commit. */
Test(region, a_region_of_an_earlier_boot_is_rebuilt_from_the_wal)
{
  char path[4096];
  char *dir = make_db_with_key("reboot", path, sizeof path);
  int oldfd = open(path, O_RDONLY | O_CLOEXEC);   /* so its inode cannot be reused */
  cr_assert_geq(oldfd, 0, "open old region");
  struct stat before;
  cr_assert_eq(fstat(oldfd, &before), 0, "fstat");
  uint8_t other_boot[16];
  memset(other_boot, 0x5a, sizeof other_boot);
  file_write(path, (off_t)offsetof(struct shm_header, boot_id), other_boot, sizeof other_boot);
  sochdb_options o = small_opts();
  sochdb *db = tu_open_with(dir, &o);
  struct stat now;
  cr_assert_eq(fstat(db->region.fd, &now), 0, "fstat");
  cr_assert_neq(now.st_ino, before.st_ino, "the region of an earlier boot was trusted instead of rebuilt");
  cr_assert_neq(memcmp(db->region.hdr->boot_id, other_boot, sizeof other_boot), 0, "the new region has this boot's id");
  char buf[16];
  cr_assert_eq(tu_read_str(db, "key", buf, sizeof buf), SOCHDB_OK, "the durable commit is replayed");
  cr_assert_str_eq(buf, "value");
  close(oldfd);
  sochdb_close(db);
  free(dir);
}

/* An opener that cannot read this boot's id (open fails with EMFILE: the
** region's descriptor was the last one its limit allowed; no /proc in a
** chroot) sees all zeros, which differ from the boot id of a region made
** this boot. A region some process holds a slot of is of this boot, whatever
** the ids say: it must not be replaced as one of an earlier boot, or the
** attached processes and the next opener's would be two regions of one
** database. */
Test(region, an_opener_without_the_boot_id_does_not_replace_a_region_in_use)
{
  char path[4096];
  char *dir = make_db_with_key("noboot", path, sizeof path);
  int holder = hold_a_slot(path);
  struct stat before;
  cr_assert_eq(fstat(holder, &before), 0, "fstat");
  pid_t pid = tu_fork();
  cr_assert_geq(pid, 0, "fork: %s", strerror(errno));
  if (pid == 0) {
    /* The lowest free descriptor is the last one allowed: the region takes
    ** it (the files opened before it are closed by then), and the boot id's
    ** open then fails. */
    int lowest = dup(0);
    if (lowest < 0)
      _exit(2);
    close(lowest);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
      _exit(3);
    rl.rlim_cur = (rlim_t)lowest + 1;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
      _exit(4);
    sochdb_options o = small_opts();
    sochdb *db = NULL;
    if (sochdb_open(dir, &o, &db) == SOCHDB_OK)
      sochdb_close(db);   /* or it fails later, out of descriptors: either way */
    _exit(0);
  }
  int st = 0;
  char how[64];
  cr_assert_eq(tu_wait_child(pid, 30000, &st), 0, "the opener did not return in 30 s");
  tu_forget_child(pid);
  cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the opener: %s", tu_status_str(st, how, sizeof how));
  struct stat held, named;
  cr_assert_eq(fstat(holder, &held), 0, "fstat");
  cr_assert_gt(held.st_nlink, 0u, "the region in use was unlinked");
  cr_assert_eq(stat(path, &named), 0, "stat %s", path);
  cr_assert_eq(named.st_ino, before.st_ino, "the region in use was replaced by inode %llu",
               (unsigned long long)named.st_ino);
  close(holder);
  free(dir);
}

/* ---- a file size limit ------------------------------------------------------ */

/* A process whose file size limit (`ulimit -f`) is below the region's size
** was killed by SIGXFSZ in sochdb_open: the ftruncate that sizes a new
** region raises it. The open fails with SOCHDB_IO (EFBIG) and says why. */
Test(region, a_file_size_limit_below_the_region_fails_the_open_not_the_process)
{
  const char *dir = tu_dir();
  pid_t pid = tu_fork();
  cr_assert_geq(pid, 0, "fork: %s", strerror(errno));
  if (pid == 0) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_FSIZE, &rl) != 0)
      _exit(2);
    rl.rlim_cur = 1u << 20;   /* the region is 8 MiB; sochdb.id and the MANIFEST fit */
    if (setrlimit(RLIMIT_FSIZE, &rl) != 0)
      _exit(3);
    sochdb_options o = small_opts();
    sochdb *db = NULL;
    int rc = sochdb_open(dir, &o, &db);
    if (rc == SOCHDB_OK)
      _exit(4);
    _exit(rc == SOCHDB_IO && strstr(sochdb_last_error(), "RLIMIT_FSIZE") ? 0 : 10 + rc);
  }
  int st = 0;
  char how[64];
  cr_assert_eq(tu_wait_child(pid, 30000, &st), 0, "sochdb_open under a file size limit did not return in 30 s");
  tu_forget_child(pid);
  cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "sochdb_open under a 1 MiB file size limit: %s (exit 0: "
            "SOCHDB_IO naming RLIMIT_FSIZE; 4: it opened; 10+rc: another error)",
            tu_status_str(st, how, sizeof how));
}

/* A program started with its stdout and stderr closed (`prog >&- 2>&-`, a
** daemon's child): the library's files must not get numbers 1 and 2, or
** the program's writes to them land in the shared region (its header) or
** DIR/LOCK, and every process then finds the database broken. The child
** writes to both after its open and its commit; the parent then opens and
** reads what it committed. */
Test(region, a_program_without_stdout_and_stderr_does_not_write_into_the_database)
{
  const char *dir = tu_dir();
  pid_t pid = tu_fork();
  cr_assert_geq(pid, 0, "fork: %s", strerror(errno));
  if (pid == 0) {
    close(1);
    close(2);
    sochdb_options o = small_opts();
    sochdb *db = NULL;
    if (sochdb_open(dir, &o, &db) != SOCHDB_OK)
      _exit(2);
    sochdb_txn *t = NULL;
    if (sochdb_txn_begin(db, 0, &t) != SOCHDB_OK || sochdb_put(t, "k", 1, "v", 1) != SOCHDB_OK ||
        sochdb_commit(t, SOCHDB_SYNC) != SOCHDB_OK)
      _exit(3);
    static char junk[8192];
    memset(junk, 'x', sizeof junk);
    int wrote = (write(1, junk, sizeof junk) > 0) + (write(2, junk, sizeof junk) > 0);
    sochdb_close(db);
    _exit(wrote ? 4 : 0);
  }
  int st = 0;
  char how[64];
  cr_assert_eq(tu_wait_child(pid, 30000, &st), 0, "the child did not finish in 30 s");
  tu_forget_child(pid);
  cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the child without stdout and stderr: %s (2: open, 3: commit "
            "failed; 4: its writes to fds 1 or 2 succeeded, into a file of the database)",
            tu_status_str(st, how, sizeof how));
  sochdb_options o = small_opts();
  sochdb *db = tu_open_with(dir, &o);
  char v[8];
  cr_assert_eq(tu_read_str(db, "k", v, sizeof v), SOCHDB_OK, "the child's commit");
  sochdb_close(db);
}
