/*
** bytes.h — little-endian loads and stores of fixed-width integers at any
** alignment, and LEB128 varints, for the on-disk formats (WAL, SSTables,
** MANIFEST, row values); and the byte-wise order of keys.
*/
#ifndef SOCHDB_BYTES_H
#define SOCHDB_BYTES_H

#include <endian.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

static inline uint16_t ld16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return le16toh(v); }
static inline uint32_t ld32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return le32toh(v); }
static inline uint64_t ld64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return le64toh(v); }
static inline uint64_t ld64be(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return be64toh(v); }
static inline void st16(uint8_t *p, uint16_t v) { v = htole16(v); memcpy(p, &v, 2); }
static inline void st32(uint8_t *p, uint32_t v) { v = htole32(v); memcpy(p, &v, 4); }
static inline void st64(uint8_t *p, uint64_t v) { v = htole64(v); memcpy(p, &v, 8); }

/* Bytes of the varint (LEB128) of v. */
static inline size_t varint_len(uint64_t v)
{
  size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    n++;
  }
  return n;
}

/* Store v as a varint at p; returns its length (at most 10). */
static inline size_t put_varint(uint8_t *p, uint64_t v)
{
  size_t n = 0;
  while (v >= 0x80) {
    p[n++] = (uint8_t)(v | 0x80);
    v >>= 7;
  }
  p[n++] = (uint8_t)v;
  return n;
}

/* memcpy for the short keys a scan copies once a key: two overlapping
** word moves for 8-16 bytes, no call (a libc call with its length dispatch
** cost 17 instructions a key); never reads or writes outside the n bytes. */
static inline void copy_short(void *dst, const void *src, size_t n)
{
  uint8_t *d = dst;
  const uint8_t *s = src;
  if (n >= 8 && n <= 16) {
    uint64_t a, b;
    memcpy(&a, s, 8);
    memcpy(&b, s + n - 8, 8);
    memcpy(d, &a, 8);
    memcpy(d + n - 8, &b, 8);
  } else if (n) {
    memcpy(d, s, n);
  }
}

/* Read a varint from p[*pos..end) into *v, advancing *pos: 1, or 0 if it is
** cut off or does not fit 64 bits. */
static inline int get_varint(const uint8_t *p, size_t end, size_t *pos, uint64_t *v)
{
  if (*pos < end && p[*pos] < 0x80) {   /* one byte, as most of an entry's lengths: no loop (a scan decodes four a key) */
    *v = p[(*pos)++];
    return 1;
  }
  uint64_t r = 0;
  for (unsigned shift = 0; shift < 64; shift += 7) {
    if (*pos >= end)
      return 0;
    uint8_t c = p[(*pos)++];
    if (shift == 63 && c > 1)
      return 0;
    r |= (uint64_t)(c & 0x7f) << shift;
    if (!(c & 0x80)) {
      *v = r;
      return 1;
    }
  }
  return 0;
}

/* Keys' order: bytewise (memcmp's), a key that is a prefix of another first.
** Short keys are compared 8 bytes at a time in registers; memcmp's call and
** length dispatch cost as much as the comparison for the 16-byte keys that
** every skiplist step and index search compares. */
static inline int key_order(const void *a, size_t alen, const void *b, size_t blen)
{
  const uint8_t *p = a, *q = b;
  size_t n = alen < blen ? alen : blen;
  if (n <= 32) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
      uint64_t x = ld64be(p + i), y = ld64be(q + i);
      if (x != y)
        return x < y ? -1 : 1;
    }
    /* The last 0-7 bytes one by one: the first usually decides (a scan's
    ** bound, the reserved keys' 0xFF 0xFF, is 2 bytes long). */
    for (; i < n; i++)
      if (p[i] != q[i])
        return p[i] < q[i] ? -1 : 1;
  } else {
    int c = memcmp(p, q, n);
    if (c)
      return c;
  }
  return alen < blen ? -1 : alen > blen;
}

/* n rounded up to a multiple of 8: records are 8-byte aligned. */
static inline uint64_t pad8(uint64_t n) { return (n + 7) & ~7ull; }

/* Every byte of p[0..n) is zero (preallocated, never written). */
static inline int all_zero(const uint8_t *p, size_t n)
{
  for (size_t i = 0; i < n; i++)
    if (p[i])
      return 0;
  return 1;
}

#endif
