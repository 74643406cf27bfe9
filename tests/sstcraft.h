/*
** sstcraft.h — for tests of the SSTable readers' checks: files whose
** checksums hold but whose structure says something else. The index block
** is rewritten uncompressed so that its bytes can be changed in place, then
** sealed again; a columnar block's index entry (its descriptor) is found by
** the block's offset and size. Used by test_sstfmt and test_table.
*/
#ifndef SOCHDB_TESTS_SSTCRAFT_H
#define SOCHDB_TESTS_SSTCRAFT_H

#include <criterion/criterion.h>
#include <lz4.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sstfmt.h"

/* A copy of the file buf[0..len) (calloc'ed, *n bytes) whose index block is
** stored uncompressed, its payload at *ioff, *ulen bytes, every checksum
** holding. After changing the payload, seal it again with
** sst_block_seal(out, *ioff, *ulen + SST_TRAILER_BYTES, SST_BLOCK_INDEX). */
static inline uint8_t *sc_index_uncompressed(const uint8_t *buf, size_t len, size_t *n, size_t *ioff, size_t *ulen)
{
  const uint8_t *f = buf + len - SST_FOOTER_BYTES;
  uint64_t off = 0;
  uint32_t size = 0, u = 0;
  memcpy(&off, f + 24, 8);
  memcpy(&size, f + 36, 4);
  const uint8_t *t = buf + off + size - SST_TRAILER_BYTES;
  memcpy(&u, t + 4, 4);
  *n = (size_t)off + u + SST_TRAILER_BYTES + SST_FOOTER_BYTES;
  uint8_t *out = calloc(1, *n);
  cr_assert_not_null(out);
  memcpy(out, buf, (size_t)off);
  if (t[0] == SST_LZ4)
    cr_assert_eq(LZ4_decompress_safe((const char *)buf + off, (char *)out + off, (int)(size - SST_TRAILER_BYTES),
                                     (int)u), (int)u, "index decompresses");
  else
    memcpy(out + off, buf + off, u);
  memcpy(out + off + u + 4, &u, 4);
  uint8_t *nf = out + *n - SST_FOOTER_BYTES;
  memcpy(nf, f, SST_FOOTER_BYTES);
  uint32_t nsize = u + SST_TRAILER_BYTES;
  memcpy(nf + 36, &nsize, 4);
  sst_footer_seal(nf);
  sst_block_seal(out, off, nsize, SST_BLOCK_INDEX);
  *ioff = (size_t)off;
  *ulen = u;
  return out;
}

/* The descriptor of the columnar block at off (size bytes) in the
** uncompressed index at file[ioff..ioff+ulen) (asserted to be there). */
static inline uint8_t *sc_col_descriptor(uint8_t *file, size_t ioff, size_t ulen, uint64_t off, uint32_t size)
{
  uint8_t pat[13];
  memcpy(pat, &off, 8);
  memcpy(pat + 8, &size, 4);
  pat[12] = 1;   /* the descriptor's format */
  for (size_t i = ioff; i + sizeof pat <= ioff + ulen; i++)
    if (!memcmp(file + i, pat, sizeof pat))
      return file + i;
  cr_assert_fail("no descriptor for the block at %llu", (unsigned long long)off);
  return NULL;
}

#endif
