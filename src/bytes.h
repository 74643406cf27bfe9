/*
** bytes.h — little-endian loads and stores of fixed-width integers at any
** alignment, for the on-disk formats (WAL, SSTables, MANIFEST).
*/
#ifndef SOCHDB_BYTES_H
#define SOCHDB_BYTES_H

#include <endian.h>
#include <stdint.h>
#include <string.h>

static inline uint16_t ld16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return le16toh(v); }
static inline uint32_t ld32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return le32toh(v); }
static inline uint64_t ld64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return le64toh(v); }
static inline void st16(uint8_t *p, uint16_t v) { v = htole16(v); memcpy(p, &v, 2); }
static inline void st32(uint8_t *p, uint32_t v) { v = htole32(v); memcpy(p, &v, 4); }
static inline void st64(uint8_t *p, uint64_t v) { v = htole64(v); memcpy(p, &v, 8); }

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
