/*
** make_corpus.c — writes the seed corpus of the fuzz targets: a few valid
** files of each kind, made with the library's own writers.
**
**   sochdb_fuzz_corpus OUTDIR   ->  files in OUTDIR/sst, OUTDIR/wal, OUTDIR/manifest, OUTDIR/txn,
**                                   OUTDIR/table
**
** The MANIFESTs carry the database id fuzz_manifest.c replays them with;
** OUTDIR/txn and OUTDIR/table hold a few programs of API calls for
** fuzz_txn.c and fuzz_table.c.
*/
#include "manifest.h"
#include "rowfmt.h"
#include "sochdb.h"
#include "sstfmt.h"
#include "walfmt.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const uint8_t DB_ID[16] = "0123456789abcdef";   /* as in fuzz_manifest.c */
static const char *out;

static void die(const char *what)
{
  fprintf(stderr, "make_corpus: %s: %s (%s)\n", what, strerror(errno), sochdb_last_error());
  exit(1);
}

static void save(const char *kind, const char *name, const void *p, size_t n)
{
  char path[4200];
  snprintf(path, sizeof path, "%s/%s", out, kind);
  if (mkdir(path, 0755) != 0 && errno != EEXIST)
    die(path);
  snprintf(path, sizeof path, "%s/%s/%s", out, kind, name);
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0 || write(fd, p, n) != (ssize_t)n)
    die(path);
  close(fd);
}

/* nkeys keys, up to 3 versions each, some deletes; values compressible or
** not; hashed: the data blocks' hash index or none; legacy: the format
** before version 4 (version 3 if hashed, else 1), else version 4. */
static void sst(const char *name, unsigned nkeys, size_t vlen, int compressible, size_t block, int hashed, int legacy)
{
  struct sst_builder b;
  if (sst_builder_init(&b, block) != SOCHDB_OK)
    die("sst_builder_init");
  b.hash_blocks = hashed;
  b.legacy_index = legacy;
  uint8_t val[512];
  uint64_t x = 88172645463325252ull;
  for (unsigned i = 0; i < nkeys; i++) {
    char key[32];
    int kl = snprintf(key, sizeof key, "k%05u", i * 3);
    unsigned versions = 1 + i % 3;
    for (unsigned v = 0; v < versions; v++) {
      for (size_t j = 0; j < vlen; j++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        val[j] = compressible ? (uint8_t)("abcd"[j % 4]) : (uint8_t)x;
      }
      int del = i % 5 == 4 && v == 0;
      if (sst_builder_add(&b, key, (size_t)kl, 100 + (uint64_t)i * 4 + versions - v, del ? SST_DEL : SST_PUT, val,
                          del ? 0 : vlen) != SOCHDB_OK)
        die("sst_builder_add");
    }
  }
  uint8_t *buf;
  size_t len;
  if (sst_builder_finish(&b, &buf, &len) != SOCHDB_OK)
    die("sst_builder_finish");
  sst_builder_free(&b);
  save("sst", name, buf, len);
  free(buf);
}

/* Plain keys, then nrows rows of table 3 in columnar blocks (4 columns:
** int64 key, int64, double, nullable string; some deletes, some versions). */
static void sst_rows(const char *name, unsigned nrows, size_t block)
{
  static const uint8_t types[4] = { SOCHDB_INT64, SOCHDB_INT64, SOCHDB_DOUBLE, SOCHDB_STRING };
  struct sst_builder b;
  if (sst_builder_init(&b, block) != SOCHDB_OK)
    die("sst_builder_init");
  if (sst_builder_add(&b, "a", 1, 5, SST_PUT, "plain", 5) != SOCHDB_OK)
    die("sst_builder_add");
  for (unsigned i = 0; i < nrows; i++) {
    uint8_t key[32], val[128];
    rowfmt_row_prefix(key, 3);
    sochdb_value v[4] = { { .i64 = i }, { .i64 = (int64_t)i * 7 }, { .f64 = i / 3.0 },
                          { .bytes = "text", .len = 4, .is_null = i % 3 == 0 } };
    size_t kl = ROWFMT_PREFIX_LEN + rowfmt_pk_encode(key + ROWFMT_PREFIX_LEN, SOCHDB_INT64, &v[0]);
    for (unsigned ver = 0; ver < 1 + i % 2; ver++) {
      int del = i % 9 == 8 && ver == 0;
      size_t vl = del ? 0 : rowfmt_encode(val, 4, types, v);
      if (sst_builder_add(&b, key, kl, 1000 + (uint64_t)i * 4 - ver, del ? SST_DEL : SST_PUT, val, vl) != SOCHDB_OK)
        die("sst_builder_add");
    }
  }
  uint8_t *buf;
  size_t len;
  if (sst_builder_finish(&b, &buf, &len) != SOCHDB_OK)
    die("sst_builder_finish");
  sst_builder_free(&b);
  save("sst", name, buf, len);
  free(buf);
}

/* A segment of ngroups groups of 1..4 records; torn: a half-written group after them. */
static void wal(const char *name, unsigned ngroups, int torn)
{
  static uint8_t file[1 << 16];
  struct wal_seg_header h;
  wal_seg_header_init(&h, 4096, DB_ID, 1);
  memcpy(file, &h, sizeof h);
  size_t n = sizeof h;
  uint64_t lsn = 4096, seq = 7;
  for (unsigned g = 0; g < ngroups + (torn ? 1 : 0); g++) {
    uint8_t payload[8192];
    size_t pn = 0;
    for (unsigned r = 0; r < 1 + g % 4; r++) {
      unsigned nops = 1 + r % 3;
      char key[3][16];
      uint64_t kv = 0;
      for (unsigned o = 0; o < nops; o++)
        kv += (uint64_t)snprintf(key[o], sizeof key[o], "key%llu.%u", (unsigned long long)seq, o) + o * 5;
      size_t bytes = wal_record_bytes(nops, kv);
      wal_record_begin(payload + pn, bytes, WAL_COMMIT, seq++, nops);
      size_t pos = 0;
      for (unsigned o = 0; o < nops; o++)
        pos = wal_record_add_op(payload + pn, pos, o == 2 ? WAL_DEL : WAL_PUT, key[o], (uint32_t)strlen(key[o]),
                                "valuevaluevalue", o == 2 ? 0 : o * 5);
      wal_record_finish(payload + pn);
      pn += bytes;
    }
    struct wal_group_header gh;
    wal_group_header_init(&gh, wal_seg_salt(&h), lsn, payload, (uint32_t)pn);
    memcpy(file + n, &gh, sizeof gh);
    memcpy(file + n + sizeof gh, payload, pn);
    size_t total = sizeof gh + pn;
    n += g < ngroups ? total : total / 2;   /* the torn group: half of it */
    lsn += pn;
  }
  save("wal", name, file, n);
}

/* A MANIFEST after a few edits, made in a scratch directory. */
static void manifest(const char *name, unsigned edits)
{
  char dir[] = "/tmp/sochdb-corpus-XXXXXX";
  if (!mkdtemp(dir))
    die("mkdtemp");
  struct manifest *m;
  if (manifest_create(dir, DB_ID, &m) != SOCHDB_OK)
    die("manifest_create");
  struct manifest_state st;
  manifest_state_init(&st);
  for (unsigned i = 0; i < edits; i++) {
    struct manifest_edit e;
    manifest_edit_init(&e);
    char lo[16], hi[16];
    snprintf(lo, sizeof lo, "a%u", i);
    snprintf(hi, sizeof hi, "z%u", i);
    struct manifest_file f = { .number = 10 + i, .size = 1000 + i, .smallest = (uint8_t *)lo,
                               .smallest_len = (uint32_t)strlen(lo), .largest = (uint8_t *)hi,
                               .largest_len = (uint32_t)strlen(hi), .min_seq = i, .max_seq = i + 5 };
    manifest_edit_add_file(&e, i % MANIFEST_LEVELS, &f);
    if (i >= 2)
      manifest_edit_delete_file(&e, (i - 2) % MANIFEST_LEVELS, 10 + i - 2);
    manifest_edit_set_flushed(&e, 100 + i);
    manifest_edit_set_next_file(&e, 20 + i);
    if (manifest_apply(m, &st, &e) != SOCHDB_OK)
      die("manifest_apply");
    manifest_edit_free(&e);
  }
  if (edits >= 3 && manifest_rewrite(m, &st) != SOCHDB_OK)   /* a snapshot record with files */
    die("manifest_rewrite");
  uint64_t number = manifest_number(m);
  manifest_close(m);
  manifest_state_free(&st);
  char path[256];
  snprintf(path, sizeof path, "%s/MANIFEST-%06llu", dir, (unsigned long long)number);
  FILE *f = fopen(path, "rb");
  if (!f)
    die(path);
  static uint8_t buf[1 << 16];
  size_t n = fread(buf, 1, sizeof buf, f);
  fclose(f);
  save("manifest", name, buf, n);
  unlink(path);
  snprintf(path, sizeof path, "%s/CURRENT", dir);
  unlink(path);
  rmdir(dir);
}

/* Programs for fuzz_txn.c: an operation byte, a slot byte, then the
** operation's own bytes (keys: a length byte and two letter bytes; values:
** a length byte and an offset byte). */
static void txn_programs(void)
{
  static const uint8_t put_commit_read[] = {
    0, 0,                    /* begin read-write in slot 0 */
    2, 0, 1, 5, 0, 20, 3,    /* put a 2-letter key, a 20-byte value */
    2, 0, 3, 7, 1, 200, 9,   /* put a 4-letter key, 200 bytes */
    5, 0,                    /* commit */
    1, 1,                    /* begin read-only in slot 1 */
    4, 1, 1, 5, 0,           /* get the first key */
    7, 1, 3, 0, 1, 0, 3, 255, 255, /* scan from a 1-letter key to a 4-letter one */
  };
  static const uint8_t conflict[] = {
    0, 0, 0, 1,              /* two read-write transactions, slots 0 and 1 */
    2, 0, 0, 1, 0, 8, 1,     /* both put one key */
    2, 1, 0, 1, 0, 9, 2,
    5, 1, 5, 0,              /* slot 1 commits first: slot 0 conflicts */
    0, 2,                    /* a third */
    3, 2, 0, 1, 0,           /* deletes the key */
    7, 2, 4,                 /* scans everything (a transient iterator) */
    5, 2,                    /* and commits */
  };
  static const uint8_t refused[] = {
    0, 0,                    /* begin read-write in slot 0 */
    8, 0, 1, 8, 0, 3,        /* a NULL key, a key too long */
    8, 0, 5, 8, 0, 7,        /* a value too long, one over half a memtable */
    1, 1, 2, 1, 0, 1, 0, 5, 1,   /* a put to a read-only transaction */
    8, 0, 11,                /* commit with unknown flags */
  };
  /* A transaction open across flushes: slot 0 puts key K; slot 1 commits
  ** 64 KiB values (20 of them fill more than a 1 MiB memtable), then K,
  ** then 20 more, so that K's newest version is in an SSTable when slot 0
  ** commits (and conflicts: the commit looks K up in the SSTables). */
  uint8_t across[600], *q = across;
  static const uint8_t begin0_put_k[] = { 0, 0, 2, 0, 0, 1, 0, 30, 1 };
  memcpy(q, begin0_put_k, sizeof begin0_put_k);
  q += sizeof begin0_put_k;
  for (unsigned i = 0; i < 41; i++) {
    uint8_t big[] = { 0, 1, 2, 1, 3, (uint8_t)(i * 7), (uint8_t)(i >> 3), 255, (uint8_t)i, 5, 1 };
    if (i == 20) {   /* K, in a small value */
      big[4] = 0, big[5] = 1, big[6] = 0, big[7] = 40;
    }
    memcpy(q, big, sizeof big);
    q += sizeof big;
  }
  *q++ = 5, *q++ = 0;   /* slot 0 commits: a conflict */
  save("txn", "across-flushes", across, (size_t)(q - across));
  save("txn", "put-commit-read", put_commit_read, sizeof put_commit_read);
  save("txn", "conflict", conflict, sizeof conflict);
  save("txn", "refused", refused, sizeof refused);
}

/* Programs for fuzz_table.c: a schema byte and a byte per column after the
** key, then operations (an operation byte and the operation's own bytes). */
static void table_programs(void)
{
  /* 5 columns: an int64 key, a nullable double, a nullable string, an
  ** int64, nullable bytes; every key put, committed, ballast enough to
  ** flush them, then gets and scans with filters on each kind of column. */
  uint8_t p[1024], *q = p;
  static const uint8_t schema[] = { 3, 1 | 4, 3 | 4, 0, 2 | 4 };
  memcpy(q, schema, sizeof schema);
  q += sizeof schema;
  for (unsigned k = 0; k < 24; k++) {
    uint8_t put[] = { 0, (uint8_t)k, (uint8_t)(k * 5), (uint8_t)k, (uint8_t)(k * 3), (uint8_t)(k * 7),
                      (uint8_t)(k + 1), (uint8_t)(k * 11), (uint8_t)(k * 2), (uint8_t)(k * 13), (uint8_t)k };
    memcpy(q, put, sizeof put);
    q += sizeof put;
  }
  static const uint8_t rest[] = {
    4,                          /* commit */
    7, 0, 7, 1, 7, 2, 7, 3,     /* ballast: the rows flush */
    2, 5, 2, 2, 1,              /* get key 5, columns 2 and 1 */
    3, 4, 0, 1, 1, 5, 1,        /* scan column 0 where the double >= case 5 */
    3, 7, 2, 20, 3, 0, 3, 2, 0, 4, 1, 9, 17, /* bounds, 3 columns, the string between two */
    1, 5, 0, 30, 4,             /* delete key 5, put key 30 % 24, commit */
    6, 1,                       /* add a double column */
    3, 4, 0, 5, 4, 0, 3,        /* scan it: every value NULL */
  };
  memcpy(q, rest, sizeof rest);
  q += sizeof rest;
  save("table", "rows-flushed", p, (size_t)(q - p));
  /* 3 columns: a string key, nullable bytes, a double; puts, a scan, an abort */
  static const uint8_t strings[] = {
    (2 << 2) | 1, 2 | 4, 1,
    0, 3, 1, 255, 0, 2,  0, 17, 0, 0, 1, 9,  0, 22, 4, 170, 1, 1,
    3, 4, 1, 0, 1, 1, 2, 1, 3,
    5, 2, 3, 1, 0,
  };
  save("table", "string-keys", strings, sizeof strings);
}

int main(int argc, char **argv)
{
  if (argc != 2) {
    fprintf(stderr, "usage: %s OUTDIR\n", argv[0]);
    return 2;
  }
  out = argv[1];
  if (mkdir(out, 0755) != 0 && errno != EEXIST)
    die(out);
  sst("empty.sst", 0, 0, 0, 0, 1, 0);
  sst("one.sst", 1, 8, 0, 0, 1, 0);
  sst("small.sst", 20, 16, 0, SST_BLOCK_MIN, 1, 0);
  sst("blocks.sst", 200, 40, 0, SST_BLOCK_MIN, 1, 0);
  sst("lz4.sst", 150, 100, 1, SST_BLOCK_MIN, 1, 0);
  sst("blocks-unhashed.sst", 200, 40, 0, SST_BLOCK_MIN, 0, 0);
  sst("blocks-v3.sst", 200, 40, 0, SST_BLOCK_MIN, 1, 1);
  sst("blocks-v1.sst", 200, 40, 0, SST_BLOCK_MIN, 0, 1);
  sst("lz4-v1.sst", 150, 100, 1, SST_BLOCK_MIN, 0, 1);
  sst_rows("rows.sst", 40, SST_BLOCK_MIN);
  sst_rows("rowblocks.sst", 600, SST_BLOCK_MIN);
  wal("empty.wal", 0, 0);
  wal("groups.wal", 5, 0);
  wal("torn.wal", 3, 1);
  manifest("fresh.manifest", 0);
  manifest("edits.manifest", 2);
  manifest("rewritten.manifest", 5);
  txn_programs();
  table_programs();
  return 0;
}
