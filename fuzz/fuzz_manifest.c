/*
** fuzz_manifest.c — libFuzzer target for the MANIFEST replay (src/manifest.c).
**
** The input is a whole MANIFEST file: written as DIR/MANIFEST-000001 of a
** private temporary directory whose CURRENT names it, then replayed with
** manifest_read (read-only) twice: as it is, then with the header's and every
** fitting record's checksum recomputed, so that the edit decoder and the
** state checks see arbitrary bytes behind valid checksums. The checksum
** formulas are copied from manifest.c (which exports no sealing helper):
** keep them in step. Nothing may crash, read out of bounds or leak.
*/
#include "bytes.h"
#include "manifest.h"

#include "sochdb.h"

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

#define SEED_HEADER 0x4d414e0a55ull   /* as in manifest.c */
#define SEED_RECORD 0x4d414e0b66ull

static const uint8_t DB_ID[16] = "0123456789abcdef";   /* as in make_corpus.c */
static char dir[64];
static char manifest_path[128];
static volatile uint64_t sink;


static void cleanup(void)
{
  char p[128];
  snprintf(p, sizeof p, "%s/CURRENT", dir);
  unlink(p);
  unlink(manifest_path);
  rmdir(dir);
}

static int write_file(const char *path, const uint8_t *p, size_t n)
{
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0)
    return -1;
  int ok = write(fd, p, n) == (ssize_t)n;
  close(fd);
  return ok ? 0 : -1;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
  (void)argc;
  (void)argv;
  const char *tmp = getenv("TMPDIR");
  snprintf(dir, sizeof dir, "%s/sochdb-fuzz-XXXXXX", tmp && strlen(tmp) < 30 ? tmp : "/tmp");
  if (!mkdtemp(dir))
    abort();
  snprintf(manifest_path, sizeof manifest_path, "%s/MANIFEST-000001", dir);
  char p[128];
  snprintf(p, sizeof p, "%s/CURRENT", dir);
  if (write_file(p, (const uint8_t *)"MANIFEST-000001\n", 16) != 0)
    abort();
  atexit(cleanup);
  return 0;
}

static void replay(const uint8_t *buf, size_t len)
{
  if (write_file(manifest_path, buf, len) != 0)
    abort();
  struct manifest_state st;
  int torn;
  if (manifest_read(dir, DB_ID, &st, &torn) == SOCHDB_OK) {
    for (unsigned l = 0; l < MANIFEST_LEVELS; l++)
      for (size_t i = 0; i < st.levels[l].n; i++) {
        const struct manifest_file *f = &st.levels[l].files[i];
        sink += f->number + f->smallest[0] + f->smallest[f->smallest_len - 1] + f->largest[0] +
                f->largest[f->largest_len - 1];
      }
    manifest_state_free(&st);
  }
}

static void reseal(uint8_t *buf, size_t len)
{
  if (len < MANIFEST_HEADER)
    return;
  memcpy(buf + 16, DB_ID, 16);   /* ours, so that replay goes past the header */
  st64(buf + 32, XXH3_64bits_withSeed(buf, 32, SEED_HEADER));
  for (size_t off = MANIFEST_HEADER; len - off >= MANIFEST_RECORD_HEADER;) {
    uint32_t bytes = ld32(buf + off);
    uint64_t total = MANIFEST_RECORD_HEADER + (((uint64_t)bytes + 7) & ~7ull);
    if (total > len - off)
      break;
    uint8_t *p = buf + off + MANIFEST_RECORD_HEADER;
    uint64_t o = off;
    st64(buf + off + 8, XXH3_64bits_withSeed(p, bytes, SEED_RECORD ^ (o << 32) ^ o ^ ((uint64_t)bytes << 8)));
    off += (size_t)total;
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  uint8_t *buf = malloc(size ? size : 1);
  if (!buf)
    return 0;
  memcpy(buf, data, size);
  replay(buf, size);
  reseal(buf, size);
  replay(buf, size);
  free(buf);
  return 0;
}
