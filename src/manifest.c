/*
** manifest.c — the MANIFEST edit log and CURRENT (see manifest.h for the
** layout, the durability rules and how a torn tail is told from corruption).
*/
#include "manifest.h"

#include "bytes.h"
#include "error.h"
#include "fsutil.h"
#include "sochdb.h"
#include "bulkhash.h"
#include "filenames.h"
#include "testhooks.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAN_MAGIC       "SOCHMAN"
#define SEED_HEADER     0x4d414e0a55ull
#define SEED_RECORD     0x4d414e0b66ull
#define EDIT_HEADER     32u
#define ADD_HEADER      48u
#define DEL_BYTES       16u
#define FLAG_FLUSHED    1u
#define FLAG_NEXT       2u
#define PATH_MAX_DIR    4000u



struct manifest {
  char     dir[PATH_MAX_DIR + 1];
  uint8_t  db_id[16];
  uint64_t number;
  uint64_t end;        /* file offset after the last whole record */
  int      fd;
  int      failed;     /* an I/O failure left the file or CURRENT in doubt */
};

/* ---- state and edits -------------------------------------------------------- */

void manifest_state_init(struct manifest_state *s)
{
  memset(s, 0, sizeof *s);
}

static void file_free(struct manifest_file *f)
{
  free(f->smallest);
  free(f->largest);
  f->smallest = f->largest = NULL;
}

void manifest_state_free(struct manifest_state *s)
{
  if (!s)
    return;
  for (unsigned l = 0; l < MANIFEST_LEVELS; l++) {
    for (size_t i = 0; i < s->levels[l].n; i++)
      file_free(&s->levels[l].files[i]);
    free(s->levels[l].files);
  }
  manifest_state_init(s);
}

uint64_t manifest_level_bytes(const struct manifest_level *lv)
{
  uint64_t n = 0;
  for (size_t i = 0; i < lv->n; i++)
    if (__builtin_add_overflow(n, lv->files[i].size, &n))
      return UINT64_MAX;
  return n;
}

void manifest_edit_init(struct manifest_edit *e)
{
  memset(e, 0, sizeof *e);
}

void manifest_edit_free(struct manifest_edit *e)
{
  if (!e)
    return;
  for (size_t i = 0; i < e->nadds; i++)
    file_free(&e->adds[i].file);
  free(e->adds);
  free(e->dels);
  manifest_edit_init(e);
}

static int file_copy(struct manifest_file *dst, const struct manifest_file *src)
{
  *dst = *src;
  dst->smallest = malloc(src->smallest_len);
  dst->largest = malloc(src->largest_len);
  if (!dst->smallest || !dst->largest) {
    file_free(dst);
    return sdb_fail(SOCHDB_NOMEM, "copying the keys of file %llu", (unsigned long long)src->number);
  }
  memcpy(dst->smallest, src->smallest, src->smallest_len);
  memcpy(dst->largest, src->largest, src->largest_len);
  return SOCHDB_OK;
}

static int keys_valid(const struct manifest_file *f)
{
  return f->smallest && f->largest && f->smallest_len >= 1 && f->smallest_len <= MANIFEST_MAX_KEY &&
         f->largest_len >= 1 && f->largest_len <= MANIFEST_MAX_KEY;
}

/* Make room for one more element in the array *p of *cap elements, n used. */
static int room_for_one(void **p, size_t *cap, size_t n, size_t elem)
{
  if (n < *cap)
    return SOCHDB_OK;
  size_t grown_cap = *cap ? *cap * 2 : 8;
  void *grown = realloc(*p, grown_cap * elem);
  if (!grown)
    return sdb_fail(SOCHDB_NOMEM, "growing a manifest edit");
  *p = grown;
  *cap = grown_cap;
  return SOCHDB_OK;
}

int manifest_edit_add_file(struct manifest_edit *e, unsigned level, const struct manifest_file *f)
{
  if (!e || !f)
    return sdb_fail(SOCHDB_INVALID, "manifest_edit_add_file: NULL argument");
  if (level >= MANIFEST_LEVELS)
    return sdb_fail(SOCHDB_INVALID, "level %u is beyond the %u levels", level, MANIFEST_LEVELS);
  if (!keys_valid(f))
    return sdb_fail(SOCHDB_INVALID, "file %llu: smallest/largest key missing or of length 0 or above %u",
                    (unsigned long long)f->number, MANIFEST_MAX_KEY);
  if (room_for_one((void **)&e->adds, &e->cap_adds, e->nadds, sizeof *e->adds) != SOCHDB_OK)
    return SOCHDB_NOMEM;
  struct manifest_edit_add *a = &e->adds[e->nadds];
  a->level = level;
  int rc = file_copy(&a->file, f);
  if (rc != SOCHDB_OK)
    return rc;
  e->nadds++;
  return SOCHDB_OK;
}

int manifest_edit_delete_file(struct manifest_edit *e, unsigned level, uint64_t number)
{
  if (!e)
    return sdb_fail(SOCHDB_INVALID, "manifest_edit_delete_file: NULL edit");
  if (level >= MANIFEST_LEVELS)
    return sdb_fail(SOCHDB_INVALID, "level %u is beyond the %u levels", level, MANIFEST_LEVELS);
  if (room_for_one((void **)&e->dels, &e->cap_dels, e->ndels, sizeof *e->dels) != SOCHDB_OK)
    return SOCHDB_NOMEM;
  e->dels[e->ndels].level = level;
  e->dels[e->ndels].number = number;
  e->ndels++;
  return SOCHDB_OK;
}

void manifest_edit_set_flushed(struct manifest_edit *e, uint64_t last_flushed_seq)
{
  e->has_flushed = 1;
  e->last_flushed_seq = last_flushed_seq;
}

void manifest_edit_set_next_file(struct manifest_edit *e, uint64_t next_file_number)
{
  e->has_next_file = 1;
  e->next_file_number = next_file_number;
}

/* ---- checking and applying an edit ----------------------------------------- */

static long find_file(const struct manifest_level *lv, uint64_t number)
{
  for (size_t i = 0; i < lv->n; i++)
    if (lv->files[i].number == number)
      return (long)i;
  return -1;
}

const struct manifest_file *manifest_state_file(const struct manifest_state *s, unsigned level, uint64_t number)
{
  if (!s || level >= MANIFEST_LEVELS)
    return NULL;
  long at = find_file(&s->levels[level], number);
  return at < 0 ? NULL : &s->levels[level].files[at];
}

const struct manifest_file *manifest_state_newest(const struct manifest_state *s, size_t *nfiles)
{
  const struct manifest_file *newest = NULL;
  *nfiles = 0;
  for (unsigned l = 0; l < MANIFEST_LEVELS; l++)
    for (size_t i = 0; i < s->levels[l].n; i++, ++*nfiles)
      if (!newest || s->levels[l].files[i].max_seq > newest->max_seq)
        newest = &s->levels[l].files[i];
  return newest;
}

static int deleted_by(const struct manifest_edit *e, unsigned level, uint64_t number)
{
  for (size_t i = 0; i < e->ndels; i++)
    if (e->dels[i].level == level && e->dels[i].number == number)
      return 1;
  return 0;
}

static int cmp_u64(const void *a, const void *b)
{
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

/* Whether files a and b hold a user key in common (closed ranges). */
static int ranges_overlap(const struct manifest_file *a, const struct manifest_file *b)
{
  return key_order(a->smallest, a->smallest_len, b->largest, b->largest_len) <= 0 &&
         key_order(b->smallest, b->smallest_len, a->largest, a->largest_len) <= 0;
}

static int cmp_add_ranges(const void *pa, const void *pb)
{
  const struct manifest_edit_add *a = *(const struct manifest_edit_add *const *)pa;
  const struct manifest_edit_add *b = *(const struct manifest_edit_add *const *)pb;
  if (a->level != b->level)
    return a->level < b->level ? -1 : 1;
  return key_order(a->file.smallest, a->file.smallest_len, b->file.smallest, b->file.smallest_len);
}

/* Below level 0 a level's files hold disjoint key ranges: a get searches
** the one file whose range holds its key, and would miss the key in an
** overlapping other. SOCHDB_CORRUPT if e adds a file there whose range
** meets that of a file the edit leaves in place, or of another it adds
** (sorted: a snapshot record adds every file at once). */
static int check_level_ranges(const struct manifest_state *s, const struct manifest_edit *e)
{
  const struct manifest_edit_add **deep = malloc((e->nadds ? e->nadds : 1) * sizeof *deep);
  if (!deep)
    return sdb_fail(SOCHDB_NOMEM, "checking a manifest edit");
  size_t n = 0;
  int rc = SOCHDB_OK;
  for (size_t i = 0; i < e->nadds && rc == SOCHDB_OK; i++) {
    const struct manifest_edit_add *a = &e->adds[i];
    if (a->level == 0)
      continue;
    deep[n++] = a;
    const struct manifest_level *lv = &s->levels[a->level];
    for (size_t j = 0; j < lv->n && rc == SOCHDB_OK; j++)
      if (ranges_overlap(&a->file, &lv->files[j]) && !deleted_by(e, a->level, lv->files[j].number))
        rc = sdb_fail(SOCHDB_CORRUPT, "manifest edit adds file %llu at level %u over the keys of file %llu there",
                      (unsigned long long)a->file.number, a->level, (unsigned long long)lv->files[j].number);
  }
  if (rc == SOCHDB_OK && n > 1) {
    qsort(deep, n, sizeof *deep, cmp_add_ranges);
    for (size_t i = 1; i < n && rc == SOCHDB_OK; i++)
      if (deep[i]->level == deep[i - 1]->level && ranges_overlap(&deep[i]->file, &deep[i - 1]->file))
        rc = sdb_fail(SOCHDB_CORRUPT, "manifest edit adds files %llu and %llu at level %u over the same keys",
                      (unsigned long long)deep[i - 1]->file.number, (unsigned long long)deep[i]->file.number,
                      deep[i]->level);
  }
  free(deep);
  return rc;
}

/* SOCHDB_CORRUPT if e does not apply to s; nothing changes. */
static int edit_check(const struct manifest_state *s, const struct manifest_edit *e)
{
  if (e->has_flushed && e->last_flushed_seq < s->last_flushed_seq)
    return sdb_fail(SOCHDB_CORRUPT, "manifest edit moves last_flushed_seq back from %llu to %llu",
                    (unsigned long long)s->last_flushed_seq, (unsigned long long)e->last_flushed_seq);
  /* Past any commit's seq, last_flushed_seq would make a replay skip every
  ** commit in the log, the flusher remove the log, and new commits take
  ** seqs no version can hold. */
  if (e->has_flushed && e->last_flushed_seq > MANIFEST_MAX_SEQ)
    return sdb_fail(SOCHDB_CORRUPT, "manifest edit sets last_flushed_seq to %llu, past any commit's",
                    (unsigned long long)e->last_flushed_seq);
  if (e->has_next_file && e->next_file_number > SDB_MAX_FILE_NUMBER + 1)
    return sdb_fail(SOCHDB_CORRUPT, "manifest edit sets next_file_number to %llu, past any file's",
                    (unsigned long long)e->next_file_number);
  if (e->has_next_file && e->next_file_number < s->next_file_number)
    return sdb_fail(SOCHDB_CORRUPT, "manifest edit moves next_file_number back from %llu to %llu",
                    (unsigned long long)s->next_file_number, (unsigned long long)e->next_file_number);
  for (size_t i = 0; i < e->ndels; i++) {
    const struct manifest_edit_del *d = &e->dels[i];
    if (d->level >= MANIFEST_LEVELS || find_file(&s->levels[d->level], d->number) < 0)
      return sdb_fail(SOCHDB_CORRUPT, "manifest edit deletes file %llu at level %u, which is not live",
                      (unsigned long long)d->number, d->level);
    for (size_t j = 0; j < i; j++)
      if (e->dels[j].level == d->level && e->dels[j].number == d->number)
        return sdb_fail(SOCHDB_CORRUPT, "manifest edit deletes file %llu twice", (unsigned long long)d->number);
  }
  for (size_t i = 0; i < e->nadds; i++) {
    const struct manifest_edit_add *a = &e->adds[i];
    /* A number at or past the edit's next_file_number could be handed out
    ** again, and the shared block cache, keyed by file number, would serve
    ** this file's blocks for the new one. */
    if (a->level >= MANIFEST_LEVELS || !keys_valid(&a->file) || a->file.number > SDB_MAX_FILE_NUMBER ||
        (e->has_next_file && a->file.number >= e->next_file_number) || a->file.max_seq > MANIFEST_MAX_SEQ ||
        a->file.min_seq > a->file.max_seq ||
        key_order(a->file.smallest, a->file.smallest_len, a->file.largest, a->file.largest_len) > 0)
      return sdb_fail(SOCHDB_CORRUPT, "manifest edit adds a malformed file %llu", (unsigned long long)a->file.number);
    for (unsigned l = 0; l < MANIFEST_LEVELS; l++)
      if (find_file(&s->levels[l], a->file.number) >= 0 && !deleted_by(e, l, a->file.number))
        return sdb_fail(SOCHDB_CORRUPT, "manifest edit adds file %llu, which is already live at level %u",
                        (unsigned long long)a->file.number, l);
  }
  if (e->nadds > 1) {   /* the same file added twice by the edit itself */
    uint64_t *nums = malloc(e->nadds * sizeof *nums);
    if (!nums)
      return sdb_fail(SOCHDB_NOMEM, "checking a manifest edit");
    for (size_t i = 0; i < e->nadds; i++)
      nums[i] = e->adds[i].file.number;
    qsort(nums, e->nadds, sizeof *nums, cmp_u64);
    int dup = 0;
    for (size_t i = 1; i < e->nadds && !dup; i++)
      dup = nums[i] == nums[i - 1];
    uint64_t which = dup ? nums[0] : 0;
    free(nums);
    if (dup)
      return sdb_fail(SOCHDB_CORRUPT, "manifest edit adds the same file twice (%llu...)", (unsigned long long)which);
  }
  return check_level_ranges(s, e);
}

/* Everything applying e needs allocated beforehand, so that committing cannot
** fail: room in each level (harmless to the state) and copies of the keys. */
struct prepared {
  struct manifest_file *files;
  size_t n;
};

static void prepared_free(struct prepared *p)
{
  for (size_t i = 0; i < p->n; i++)
    file_free(&p->files[i]);
  free(p->files);
  p->files = NULL;
  p->n = 0;
}

static int edit_prepare(struct manifest_state *s, const struct manifest_edit *e, struct prepared *p)
{
  p->files = NULL;
  p->n = 0;
  for (unsigned l = 0; l < MANIFEST_LEVELS; l++) {
    struct manifest_level *lv = &s->levels[l];
    size_t need = lv->n;
    for (size_t i = 0; i < e->nadds; i++)
      need += e->adds[i].level == l;
    if (need <= lv->cap)
      continue;
    size_t cap = lv->cap ? lv->cap : 8;
    while (cap < need)
      cap *= 2;
    struct manifest_file *grown = realloc(lv->files, cap * sizeof *grown);
    if (!grown)
      return sdb_fail(SOCHDB_NOMEM, "growing manifest level %u", l);
    lv->files = grown;
    lv->cap = cap;
  }
  if (!e->nadds)
    return SOCHDB_OK;
  p->files = malloc(e->nadds * sizeof *p->files);
  if (!p->files)
    return sdb_fail(SOCHDB_NOMEM, "preparing a manifest edit");
  for (size_t i = 0; i < e->nadds; i++) {
    int rc = file_copy(&p->files[i], &e->adds[i].file);
    if (rc != SOCHDB_OK) {
      prepared_free(p);
      return rc;
    }
    p->n++;
  }
  return SOCHDB_OK;
}

/* Apply a checked and prepared edit: cannot fail. Takes p's key copies. */
static void edit_commit(struct manifest_state *s, const struct manifest_edit *e, struct prepared *p)
{
  for (size_t i = 0; i < e->ndels; i++) {
    struct manifest_level *lv = &s->levels[e->dels[i].level];
    long at = find_file(lv, e->dels[i].number);
    file_free(&lv->files[at]);
    memmove(&lv->files[at], &lv->files[at + 1], (lv->n - (size_t)at - 1) * sizeof *lv->files);
    lv->n--;
  }
  for (size_t i = 0; i < e->nadds; i++) {
    struct manifest_level *lv = &s->levels[e->adds[i].level];
    lv->files[lv->n++] = p->files[i];
  }
  free(p->files);
  p->files = NULL;
  p->n = 0;
  if (e->has_flushed)
    s->last_flushed_seq = e->last_flushed_seq;
  if (e->has_next_file)
    s->next_file_number = e->next_file_number;
}

/* ---- encoding ---------------------------------------------------------------- */

static uint64_t record_checksum(const uint8_t *payload, uint32_t bytes, uint64_t offset)
{
  return XXH3_64bits_withSeed(payload, bytes, SEED_RECORD ^ (offset << 32) ^ offset ^ ((uint64_t)bytes << 8));
}

/* The whole record (header, payload, padding) for e at file offset off:
** malloc'ed into *out, *n bytes. */
static int encode_record(const struct manifest_edit *e, uint64_t off, uint8_t **out, size_t *n)
{
  uint64_t payload = EDIT_HEADER + (uint64_t)e->ndels * DEL_BYTES;
  for (size_t i = 0; i < e->nadds; i++)
    payload += pad8(ADD_HEADER + (uint64_t)e->adds[i].file.smallest_len + e->adds[i].file.largest_len);
  if (payload > UINT32_MAX - 16 || e->nadds > UINT32_MAX || e->ndels > UINT32_MAX)
    return sdb_fail(SOCHDB_INVALID, "manifest edit of %llu bytes is too large", (unsigned long long)payload);
  size_t total = MANIFEST_RECORD_HEADER + (size_t)payload;   /* payload is a multiple of 8 */
  uint8_t *buf = calloc(1, total);
  if (!buf)
    return sdb_fail(SOCHDB_NOMEM, "encoding a manifest edit of %zu bytes", total);
  uint8_t *p = buf + MANIFEST_RECORD_HEADER;
  st32(p, (e->has_flushed ? FLAG_FLUSHED : 0) | (e->has_next_file ? FLAG_NEXT : 0));
  st32(p + 4, (uint32_t)e->nadds);
  st32(p + 8, (uint32_t)e->ndels);
  st64(p + 16, e->has_flushed ? e->last_flushed_seq : 0);
  st64(p + 24, e->has_next_file ? e->next_file_number : 0);
  size_t pos = EDIT_HEADER;
  for (size_t i = 0; i < e->nadds; i++) {
    const struct manifest_file *f = &e->adds[i].file;
    uint8_t *a = p + pos;
    st32(a, e->adds[i].level);
    st32(a + 4, f->smallest_len);
    st32(a + 8, f->largest_len);
    st64(a + 16, f->number);
    st64(a + 24, f->size);
    st64(a + 32, f->min_seq);
    st64(a + 40, f->max_seq);
    memcpy(a + ADD_HEADER, f->smallest, f->smallest_len);
    memcpy(a + ADD_HEADER + f->smallest_len, f->largest, f->largest_len);
    pos += pad8(ADD_HEADER + (uint64_t)f->smallest_len + f->largest_len);
  }
  for (size_t i = 0; i < e->ndels; i++) {
    st32(p + pos, e->dels[i].level);
    st64(p + pos + 8, e->dels[i].number);
    pos += DEL_BYTES;
  }
  st32(buf, (uint32_t)payload);
  st64(buf + 8, record_checksum(p, (uint32_t)payload, off));
  *out = buf;
  *n = total;
  return SOCHDB_OK;
}

/* Decode an intact record's payload into e (initialised here). CORRUPT if it
** does not parse exactly. */
static int decode_edit(const uint8_t *p, size_t bytes, uint64_t off, struct manifest_edit *e)
{
  manifest_edit_init(e);
  if (bytes < EDIT_HEADER || (ld32(p) & ~(FLAG_FLUSHED | FLAG_NEXT)) || ld32(p + 12))
    goto bad;
  uint32_t flags = ld32(p), nadd = ld32(p + 4), ndel = ld32(p + 8);
  if (flags & FLAG_FLUSHED)
    manifest_edit_set_flushed(e, ld64(p + 16));
  else if (ld64(p + 16))
    goto bad;
  if (flags & FLAG_NEXT)
    manifest_edit_set_next_file(e, ld64(p + 24));
  else if (ld64(p + 24))
    goto bad;
  size_t pos = EDIT_HEADER;
  for (uint32_t i = 0; i < nadd; i++) {
    if (bytes - pos < ADD_HEADER)
      goto bad;
    const uint8_t *a = p + pos;
    struct manifest_file f;
    unsigned level = ld32(a);
    f.smallest_len = ld32(a + 4);
    f.largest_len = ld32(a + 8);
    f.number = ld64(a + 16);
    f.size = ld64(a + 24);
    f.min_seq = ld64(a + 32);
    f.max_seq = ld64(a + 40);
    f.smallest = (uint8_t *)a + ADD_HEADER;
    f.largest = f.smallest + f.smallest_len;
    uint64_t rec = pad8(ADD_HEADER + (uint64_t)f.smallest_len + f.largest_len);
    if (ld32(a + 12) || level >= MANIFEST_LEVELS || !keys_valid(&f) || rec > bytes - pos ||
        !all_zero(a + ADD_HEADER + f.smallest_len + f.largest_len,
                  rec - ADD_HEADER - f.smallest_len - f.largest_len))
      goto bad;
    int rc = manifest_edit_add_file(e, level, &f);
    if (rc != SOCHDB_OK) {
      manifest_edit_free(e);
      return rc;
    }
    pos += rec;
  }
  if ((uint64_t)ndel * DEL_BYTES != bytes - pos)
    goto bad;
  for (uint32_t i = 0; i < ndel; i++, pos += DEL_BYTES) {
    unsigned level = ld32(p + pos);
    if (level >= MANIFEST_LEVELS || ld32(p + pos + 4))
      goto bad;
    int rc = manifest_edit_delete_file(e, level, ld64(p + pos + 8));
    if (rc != SOCHDB_OK) {
      manifest_edit_free(e);
      return rc;
    }
  }
  return SOCHDB_OK;
bad:
  manifest_edit_free(e);
  return sdb_fail(SOCHDB_CORRUPT, "MANIFEST record at file offset %llu is intact but malformed",
                  (unsigned long long)off);
}

/* The snapshot edit of s: adds every live file, sets both numbers. The keys
** are borrowed from s (do not manifest_edit_free it: free adds only). */
static int snapshot_edit(const struct manifest_state *s, struct manifest_edit *e)
{
  manifest_edit_init(e);
  size_t n = 0;
  for (unsigned l = 0; l < MANIFEST_LEVELS; l++)
    n += s->levels[l].n;
  if (n) {
    e->adds = malloc(n * sizeof *e->adds);
    if (!e->adds)
      return sdb_fail(SOCHDB_NOMEM, "snapshot of %zu files", n);
  }
  for (unsigned l = 0; l < MANIFEST_LEVELS; l++)
    for (size_t i = 0; i < s->levels[l].n; i++) {
      e->adds[e->nadds].level = l;
      e->adds[e->nadds].file = s->levels[l].files[i];
      e->nadds++;
    }
  e->cap_adds = n;
  manifest_edit_set_flushed(e, s->last_flushed_seq);
  manifest_edit_set_next_file(e, s->next_file_number);
  return SOCHDB_OK;
}

static void header_encode(uint8_t *h, const uint8_t db_id[16], uint32_t version)
{
  memset(h, 0, MANIFEST_HEADER);
  memcpy(h, MAN_MAGIC, sizeof MAN_MAGIC);
  st32(h + 8, version);
  memcpy(h + 16, db_id, 16);
  st64(h + 32, XXH3_64bits_withSeed(h, 32, SEED_HEADER));
}

/* ---- files ---------------------------------------------------------------------- */

static void manifest_name(char *out, size_t n, uint64_t number)
{
  snprintf(out, n, "MANIFEST-%06llu", (unsigned long long)number);
}

static int pwrite_all(int fd, const uint8_t *p, size_t n, uint64_t off, const char *what)
{
  while (n) {
    ssize_t w = pwrite(fd, p, n, (off_t)off);
    if (w < 0) {
      if (errno == EINTR)
        continue;
      return sdb_fail_errno("write %s", what);
    }
    p += w;
    n -= (size_t)w;
    off += (uint64_t)w;
  }
  return SOCHDB_OK;
}

/* DIR/name appears complete or not at all: name.tmp, fdatasync, rename, fsync DIR. */
static int write_atomic(const char *dir, const char *name, const uint8_t *p, size_t n)
{
  char tmp[PATH_MAX_DIR + 64], path[PATH_MAX_DIR + 64];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  snprintf(tmp, sizeof tmp, "%s/%s.tmp", dir, name);
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0)
    return sdb_fail_errno("create %s", tmp);
  sdb_apply_db_mode(dir, fd, tmp);
  int rc = pwrite_all(fd, p, n, 0, tmp);
  if (rc == SOCHDB_OK && fdatasync(fd) != 0)
    rc = sdb_fail_errno("fdatasync %s", tmp);
  if (close(fd) != 0 && rc == SOCHDB_OK)
    rc = sdb_fail_errno("close %s", tmp);
  if (rc == SOCHDB_OK && rename(tmp, path) != 0)
    rc = sdb_fail_errno("rename %s to %s", tmp, path);
  if (rc != SOCHDB_OK) {
    unlink(tmp);
    return rc;
  }
  return sdb_fsync_dir(dir);
}

/* Write MANIFEST-<number> holding header + snapshot of s, atomically, and
** open it for appending: *fd, *end. */
static int write_new_manifest(const char *dir, const uint8_t db_id[16], uint64_t number,
                              const struct manifest_state *s, int *fd, uint64_t *end)
{
  struct manifest_edit snap;
  int rc = snapshot_edit(s, &snap);
  if (rc != SOCHDB_OK)
    return rc;
  uint8_t *rec = NULL;
  size_t n = 0;
  rc = encode_record(&snap, MANIFEST_HEADER, &rec, &n);
  free(snap.adds);   /* keys borrowed from s */
  if (rc != SOCHDB_OK)
    return rc;
  uint8_t *buf = malloc(MANIFEST_HEADER + n);
  if (!buf) {
    free(rec);
    return sdb_fail(SOCHDB_NOMEM, "new MANIFEST of %zu bytes", n);
  }
  header_encode(buf, db_id, MANIFEST_VERSION);
  memcpy(buf + MANIFEST_HEADER, rec, n);
  free(rec);
  char name[32], path[PATH_MAX_DIR + 64];
  manifest_name(name, sizeof name, number);
  rc = write_atomic(dir, name, buf, MANIFEST_HEADER + n);
  free(buf);
  if (rc != SOCHDB_OK)
    return rc;
  snprintf(path, sizeof path, "%s/%s", dir, name);
  *fd = open(path, O_RDWR | O_CLOEXEC);
  if (*fd < 0)
    return sdb_fail_errno("open %s", path);
  *end = MANIFEST_HEADER + n;
  return SOCHDB_OK;
}

static int write_current(const char *dir, uint64_t number)
{
  char line[64];
  manifest_name(line, sizeof line - 1, number);
  strcat(line, "\n");
  return write_atomic(dir, "CURRENT", (const uint8_t *)line, strlen(line));
}

static int check_dir(const char *dir, const uint8_t *db_id, void *m)
{
  if (!dir || !db_id || !m)
    return sdb_fail(SOCHDB_INVALID, "manifest: NULL argument");
  if (strlen(dir) > PATH_MAX_DIR)
    return sdb_fail(SOCHDB_INVALID, "directory path of %zu bytes is too long", strlen(dir));
  return SOCHDB_OK;
}

int manifest_create(const char *dir, const uint8_t db_id[16], struct manifest **out)
{
  int rc = check_dir(dir, db_id, out);
  if (rc != SOCHDB_OK)
    return rc;
  *out = NULL;
  struct manifest *m = calloc(1, sizeof *m);
  if (!m)
    return sdb_fail(SOCHDB_NOMEM, "manifest handle");
  strcpy(m->dir, dir);
  memcpy(m->db_id, db_id, 16);
  m->number = 1;
  m->fd = -1;
  struct manifest_state empty;
  manifest_state_init(&empty);
  rc = write_new_manifest(dir, db_id, 1, &empty, &m->fd, &m->end);
  if (rc == SOCHDB_OK)
    rc = write_current(dir, 1);
  if (rc != SOCHDB_OK) {
    manifest_close(m);
    return rc;
  }
  *out = m;
  return SOCHDB_OK;
}

/* Read a whole small file. SOCHDB_NOTFOUND if it does not exist. */
static int read_file(const char *path, uint8_t **out, size_t *n)
{
  int e = sdb_read_file(path, out, n);
  if (e == 0)
    return SOCHDB_OK;
  if (e == ENOENT)
    return sdb_fail(SOCHDB_NOTFOUND, "%s does not exist", path);
  if (e == ENOMEM)
    return sdb_fail(SOCHDB_NOMEM, "reading %s", path);
  if (e == EINVAL || e == EISDIR)   /* sdb_open_regular: a FIFO, a device or a directory in its place */
    return sdb_fail(SOCHDB_CORRUPT, "%s is not a regular file", path);
  errno = e;
  return sdb_fail_errno("read %s", path);
}

/* The payload size of an intact record at off, or -1. */
static long long intact_record(const uint8_t *buf, size_t len, size_t off)
{
  if (len - off < MANIFEST_RECORD_HEADER)
    return -1;
  uint32_t bytes = ld32(buf + off);
  uint64_t total = MANIFEST_RECORD_HEADER + pad8(bytes);
  if (bytes < EDIT_HEADER || ld32(buf + off + 4) || total > len - off)
    return -1;
  const uint8_t *p = buf + off + MANIFEST_RECORD_HEADER;
  if (ld64(buf + off + 8) != record_checksum(p, bytes, off) || !all_zero(p + bytes, pad8(bytes) - bytes))
    return -1;
  return bytes;
}

/* Replay buf into s. *end: where the whole records end. */
static int replay(const uint8_t *buf, size_t len, const uint8_t *db_id, const char *path,
                  struct manifest_state *s, size_t *end)
{
  if (len < MANIFEST_HEADER)
    return sdb_fail(SOCHDB_CORRUPT, "%s is %zu bytes, shorter than its header", path, len);
  if (memcmp(buf, MAN_MAGIC, sizeof MAN_MAGIC) != 0)
    return sdb_fail(SOCHDB_CORRUPT, "%s is not a sochdb MANIFEST (bad magic)", path);
  if (ld64(buf + 32) != XXH3_64bits_withSeed(buf, 32, SEED_HEADER))
    return sdb_fail(SOCHDB_CORRUPT, "%s: header checksum mismatch", path);
  if (ld32(buf + 8) != MANIFEST_VERSION || ld32(buf + 12))
    return sdb_fail(SOCHDB_VERSION, "%s has format version %u; this library reads %u", path, ld32(buf + 8),
                    MANIFEST_VERSION);
  if (memcmp(buf + 16, db_id, 16) != 0)
    return sdb_fail(SOCHDB_CORRUPT, "%s belongs to another database", path);
  size_t off = MANIFEST_HEADER;
  long long bytes;
  while ((bytes = intact_record(buf, len, off)) >= 0) {
    struct manifest_edit e;
    int rc = decode_edit(buf + off + MANIFEST_RECORD_HEADER, (size_t)bytes, off, &e);
    if (rc != SOCHDB_OK)
      return rc;
    struct prepared p;
    rc = edit_check(s, &e);
    if (rc == SOCHDB_CORRUPT)
      rc = sdb_fail(SOCHDB_CORRUPT, "%s: record at file offset %zu does not apply to the state", path, off);
    if (rc == SOCHDB_OK)
      rc = edit_prepare(s, &e, &p);
    if (rc == SOCHDB_OK)
      edit_commit(s, &e, &p);
    manifest_edit_free(&e);
    if (rc != SOCHDB_OK)
      return rc;
    off += MANIFEST_RECORD_HEADER + pad8((uint64_t)bytes);
  }
  *end = off;
  /* The first record (the snapshot) is written with the file, which is
  ** renamed in only once it is durable: it is never torn. Without it whole,
  ** the file is damaged, and an empty state would make every table an orphan. */
  if (off == MANIFEST_HEADER)
    return sdb_fail(SOCHDB_CORRUPT, "%s: its first record (the snapshot of the live files) is damaged or missing",
                    path);
  if (off == len || all_zero(buf + off, len - off))
    return SOCHDB_OK;
  for (size_t later = off + 8; later + MANIFEST_RECORD_HEADER <= len; later += 8)
    if (intact_record(buf, len, later) >= 0)
      return sdb_fail(SOCHDB_CORRUPT,
                      "%s damaged at file offset %zu before an intact record at offset %zu: "
                      "data that was durable is damaged", path, off, later);
  return SOCHDB_OK;   /* a torn last record: never acknowledged */
}

/* CURRENT's content: a MANIFEST's name exactly as manifest_name spells it
** (its number spelt as a table's: sst_file_number), then "\n". Another
** spelling of the number ("MANIFEST-0000007") would name a file other than
** the one opened. */
static int parse_current(const uint8_t *p, size_t n, uint64_t *number)
{
  static const char prefix[] = "MANIFEST-";
  size_t pl = sizeof prefix - 1;
  char digits[32];
  if (n <= pl || n - pl >= sizeof digits || memcmp(p, prefix, pl) != 0)
    return sdb_fail(SOCHDB_CORRUPT, "CURRENT is malformed");
  memcpy(digits, p + pl, n - pl);
  digits[n - pl] = '\0';
  if (!sst_file_number(digits, "\n", number))
    return sdb_fail(SOCHDB_CORRUPT, "CURRENT is malformed (it names %.*s)", (int)(n - 1), (const char *)p);
  return SOCHDB_OK;
}

/* Read DIR/CURRENT and build the path of the MANIFEST it names. */
/* No CURRENT: a new database, unless the directory holds an SSTable. Then
** its CURRENT was lost, and starting empty would lose every table silently
** (the daemon would even remove them as orphans). A MANIFEST alone is a
** creation cut short before CURRENT was renamed in: it lists no file. */
static int missing_current(const char *dir)
{
  DIR *d = opendir(dir);
  if (!d)
    return sdb_fail_errno("opendir %s", dir);
  struct dirent *e;
  int found = 0;
  uint64_t number;
  while (!found && (e = readdir(d)))
    found = sst_file_number(e->d_name, ".sst", &number);
  closedir(d);
  return found ? sdb_fail(SOCHDB_CORRUPT, "%s holds SSTables but no CURRENT file (it names the MANIFEST, which "
                          "lists them): restore it from a backup", dir)
               : sdb_fail(SOCHDB_NOTFOUND, "%s has no CURRENT file and no SSTable: a new database", dir);
}

static int current_manifest(const char *dir, char *path, size_t n, uint64_t *number)
{
  snprintf(path, n, "%s/CURRENT", dir);
  uint8_t *buf;
  size_t len;
  int rc = read_file(path, &buf, &len);
  if (rc == SOCHDB_NOTFOUND)
    return missing_current(dir);
  if (rc != SOCHDB_OK)
    return rc;
  rc = parse_current(buf, len, number);
  free(buf);
  if (rc != SOCHDB_OK)
    return rc;
  char name[32];
  manifest_name(name, sizeof name, *number);
  snprintf(path, n, "%s/%s", dir, name);
  return SOCHDB_OK;
}

/* Read the MANIFEST at path and replay it into state: *end is where its whole
** records end, *len its size. SOCHDB_NOTFOUND if it does not exist. */
static int replay_file(const char *path, const uint8_t *db_id, struct manifest_state *state, size_t *end,
                       size_t *len)
{
  uint8_t *buf;
  int rc = read_file(path, &buf, len);
  if (rc != SOCHDB_OK)
    return rc;
  *end = 0;
  rc = replay(buf, *len, db_id, path, state, end);
  free(buf);
  return rc;
}

int manifest_open(const char *dir, const uint8_t db_id[16], struct manifest **out, struct manifest_state *state)
{
  int rc = check_dir(dir, db_id, out);
  if (rc != SOCHDB_OK)
    return rc;
  if (!state)
    return sdb_fail(SOCHDB_INVALID, "manifest_open: NULL state");
  *out = NULL;
  manifest_state_init(state);
  char path[PATH_MAX_DIR + 64];
  uint64_t number = 0;
  rc = current_manifest(dir, path, sizeof path, &number);
  if (rc != SOCHDB_OK)
    return rc;
  int fd = open(path, O_RDWR | O_CLOEXEC);
  if (fd < 0)
    return errno == ENOENT ? sdb_fail(SOCHDB_CORRUPT, "CURRENT names %s, which does not exist", path)
                           : sdb_fail_errno("open %s", path);
  size_t end = 0, len = 0;
  rc = replay_file(path, db_id, state, &end, &len);
  if (rc == SOCHDB_NOTFOUND)
    rc = sdb_fail(SOCHDB_CORRUPT, "%s vanished while opening it", path);
  if (rc == SOCHDB_OK && end < len && ftruncate(fd, (off_t)end) != 0)   /* the torn tail goes before we append */
    rc = sdb_fail_errno("truncate the torn tail of %s", path);
  /* What we replayed must be durable before anyone acts on it: a predecessor
  ** killed between its append and its fdatasync left records that only the
  ** page cache holds, and removing the files such a record deleted, then a
  ** power cut, would leave a MANIFEST naming files that are gone. The same
  ** for CURRENT's name, renamed in by a predecessor killed before it synced
  ** the directory. */
  if (rc == SOCHDB_OK && (FAULT("manifest.open_sync") ? (errno = EIO, -1) : fdatasync(fd)) != 0)
    rc = sdb_fail_errno("fdatasync %s", path);
  if (rc == SOCHDB_OK)
    rc = sdb_fsync_dir(dir);
  struct manifest *m = rc == SOCHDB_OK ? calloc(1, sizeof *m) : NULL;
  if (rc == SOCHDB_OK && !m)
    rc = sdb_fail(SOCHDB_NOMEM, "manifest handle");
  if (rc != SOCHDB_OK) {
    close(fd);
    manifest_state_free(state);
    return rc;
  }
  strcpy(m->dir, dir);
  memcpy(m->db_id, db_id, 16);
  m->number = number;
  m->end = end;
  m->fd = fd;
  *out = m;
  return SOCHDB_OK;
}

int manifest_read(const char *dir, const uint8_t db_id[16], struct manifest_state *state, int *torn_tail)
{
  int rc = check_dir(dir, db_id, state);
  if (rc != SOCHDB_OK)
    return rc;
  manifest_state_init(state);
  if (torn_tail)
    *torn_tail = 0;
  char path[PATH_MAX_DIR + 64];
  size_t end = 0, len = 0;
  /* The daemon may rewrite the MANIFEST meanwhile (store.c, roll_manifest):
  ** switch CURRENT to a new file, then remove the one we were about to read.
  ** Missing, it is read again through CURRENT; damage only if CURRENT still
  ** names it. */
  for (uint64_t number = 0, before = UINT64_MAX; number != before;) {
    before = number;
    rc = current_manifest(dir, path, sizeof path, &number);
    if (rc != SOCHDB_OK)
      return rc;
    rc = replay_file(path, db_id, state, &end, &len);
    if (rc != SOCHDB_NOTFOUND)
      break;
  }
  if (rc == SOCHDB_NOTFOUND)
    rc = sdb_fail(SOCHDB_CORRUPT, "CURRENT names %s, which does not exist", path);
  if (rc != SOCHDB_OK) {
    manifest_state_free(state);
    return rc;
  }
  if (torn_tail)
    *torn_tail = end < len;
  return SOCHDB_OK;
}

int manifest_apply(struct manifest *m, struct manifest_state *state, const struct manifest_edit *edit)
{
  if (!m || !state || !edit)
    return sdb_fail(SOCHDB_INVALID, "manifest_apply: NULL argument");
  if (m->failed)
    return sdb_fail(SOCHDB_IO, "the MANIFEST handle failed earlier; reopen it");
  int rc = edit_check(state, edit);
  if (rc != SOCHDB_OK)
    return rc;
  if (FAULT("manifest.prepare"))   /* tests: an edit refused before a byte is written, as by NOMEM below */
    return sdb_fail(SOCHDB_NOMEM, "MANIFEST edit not prepared (a test's fault)");
  uint8_t *rec;
  size_t n;
  rc = encode_record(edit, m->end, &rec, &n);
  if (rc != SOCHDB_OK)
    return rc;
  struct prepared p;
  rc = edit_prepare(state, edit, &p);
  if (rc != SOCHDB_OK) {
    free(rec);
    return rc;
  }
  int fault = FAULT("manifest.write");
  rc = fault ? (errno = fault, sdb_fail_errno("write MANIFEST")) : pwrite_all(m->fd, rec, n, m->end, "MANIFEST");
  free(rec);
  CRASHPOINT("manifest.appended");   /* killed here: the record is in the page cache only */
  if (rc == SOCHDB_OK && fdatasync(m->fd) != 0)
    rc = sdb_fail_errno("fdatasync MANIFEST-%06llu", (unsigned long long)m->number);
  if (rc != SOCHDB_OK) {
    /* Take the partial record back; either way the file's state is in doubt
    ** (a failed fdatasync may have dropped pages), so the handle is done. */
    int keep = errno;
    if (ftruncate(m->fd, (off_t)m->end) == 0)
      (void)fdatasync(m->fd);
    errno = keep;
    m->failed = 1;
    prepared_free(&p);
    return rc;
  }
  m->end += n;
  edit_commit(state, edit, &p);
  return SOCHDB_OK;
}

int manifest_failed(const struct manifest *m) { return m && m->failed; }

int manifest_rewrite(struct manifest *m, const struct manifest_state *state)
{
  if (!m || !state)
    return sdb_fail(SOCHDB_INVALID, "manifest_rewrite: NULL argument");
  if (m->failed)
    return sdb_fail(SOCHDB_IO, "the MANIFEST handle failed earlier; reopen it");
  uint64_t number = m->number + 1;
  int fd = -1;
  uint64_t end;
  int rc = write_new_manifest(m->dir, m->db_id, number, state, &fd, &end);
  if (rc != SOCHDB_OK)
    return rc;   /* CURRENT still names the old file; the handle goes on with it */
  rc = write_current(m->dir, number);
  if (rc != SOCHDB_OK) {
    /* CURRENT may or may not have been switched (the rename may be done and
    ** only the directory's fsync have failed): which file is live is in doubt. */
    close(fd);
    m->failed = 1;
    return rc;
  }
  char old[PATH_MAX_DIR + 64], name[32];
  manifest_name(name, sizeof name, m->number);
  snprintf(old, sizeof old, "%s/%s", m->dir, name);
  close(m->fd);
  m->fd = fd;
  m->number = number;
  m->end = end;
  unlink(old);   /* best effort: a leftover old MANIFEST is never read */
  return SOCHDB_OK;
}

uint64_t manifest_number(const struct manifest *m)
{
  return m->number;
}

uint64_t manifest_bytes(const struct manifest *m) { return m->end; }

void manifest_close(struct manifest *m)
{
  if (!m)
    return;
  if (m->fd >= 0)
    close(m->fd);
  free(m);
}
