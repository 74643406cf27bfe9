/*
** rowfmt.h — the encodings behind columnar tables, shared by the table API
** (src/table.c) and the SSTable format (src/sstfmt.c), which splits rows into
** column segments without knowing any schema: the reserved key space, row
** keys with an order-preserving primary key, the self-describing row value,
** and the one-column filter both of them evaluate. Pure functions, no state.
**
** Reserved keys: every key that starts with the two bytes 0xFF 0xFF belongs
** to the engine; the key-value API refuses them (SOCHDB_INVALID).
**   FF FF 00 "schema/" NAME          -> the schema blob of table NAME
**   FF FF 00 "next_table_id"         -> u32 LE, the id the next table gets
**   FF FF 01 ID(u32 BE) PK           -> one row of table ID
** PK is the primary key (the first column) in an order-preserving form:
** an int64 is 8 bytes big-endian with the sign bit flipped; bytes and
** strings are their bytes as they are (keys compare by memcmp, shorter
** first, and PK ends the key). So rows of one table are contiguous and in
** primary-key order.
**
** Row value (everything little-endian):
**   [ ROWFMT_TAG u8 | ncols u8 | type u8 x ncols | null bitmap ceil(ncols/8) B |
**     the value of each non-null column, in column order ]
**   int64, double: 8 bytes (a double's IEEE-754 bits); bytes, string:
**   length varint (LEB128) + the bytes.
** Bit j of the bitmap (byte j/8, bit j%8) set = column j is NULL. A row may
** have fewer columns than its table's schema (written before a column was
** added): the missing ones read as NULL.
*/
#ifndef SOCHDB_ROWFMT_H
#define SOCHDB_ROWFMT_H

#include <stddef.h>
#include <stdint.h>

#include "sochdb.h"

#define ROWFMT_TAG        0xC5u
#define ROWFMT_PREFIX_LEN 7u         /* FF FF 01 + table id */
#define ROWFMT_META       0x00u
#define ROWFMT_ROWS       0x01u

/* 1 if key starts with the reserved bytes 0xFF 0xFF. */
int    rowfmt_reserved(const void *key, size_t klen);

/* The key that bounds user keys from above: 0xFF 0xFF (2 bytes). Every
** non-reserved key is below it, every reserved key at or above it. */
extern const uint8_t rowfmt_reserved_start[2];

/* meta key FF FF 00 + name into out (room for 3 + nlen); its length. */
size_t rowfmt_meta_key(uint8_t *out, const char *name, size_t nlen);

/* FF FF 01 + table id (big-endian) into out[0..7). */
void   rowfmt_row_prefix(uint8_t *out, uint32_t table);

/* The smallest key above every key that starts with out[0..n): the prefix
** incremented as a big-endian number, dropping trailing 0xFF bytes. Returns
** its length (0 when there is none: the prefix is all 0xFF). */
size_t rowfmt_successor(uint8_t *p, size_t n);

/* 1 with *table if key is a row key (FF FF 01 + 4 bytes + pk), else 0. */
int    rowfmt_key_table(const uint8_t *key, size_t klen, uint32_t *table);

/* Bytes the order-preserving form of pk takes (type: a column type). */
size_t rowfmt_pk_size(unsigned type, const sochdb_value *pk);
/* Write it into out; returns its length. */
size_t rowfmt_pk_encode(uint8_t *out, unsigned type, const sochdb_value *pk);
/* Read a primary key back from key bytes after the prefix (p[0..n)): 0 on
** success, -1 if malformed for that type. Bytes point into p. */
int    rowfmt_pk_decode(const uint8_t *p, size_t n, unsigned type, sochdb_value *out);

/* 1 if type is one of the column types (SOCHDB_INT64 .. SOCHDB_STRING). */
static inline int rowfmt_type_ok(unsigned type) { return type >= SOCHDB_INT64 && type <= SOCHDB_STRING; }
/* 1 for the fixed 8-byte types (int64, double). */
static inline int rowfmt_fixed(unsigned type) { return type == SOCHDB_INT64 || type == SOCHDB_DOUBLE; }


/* Bytes of a row's header (tag, count, types, null bitmap) of ncols columns. */
static inline size_t rowfmt_header_size(unsigned ncols) { return 2 + ncols + (ncols + 7) / 8; }

/* Bytes of the row encoding of vals[0..ncols) with those types; SIZE_MAX
** when the lengths add up past it (the caller refuses any size above its
** limit, so a wrapped sum can never pass for a small row). */
size_t rowfmt_size(unsigned ncols, const uint8_t *types, const sochdb_value *vals);
/* Encode it into out (rowfmt_size bytes); returns that size. */
size_t rowfmt_encode(uint8_t *out, unsigned ncols, const uint8_t *types, const sochdb_value *vals);

/* Decode and validate the row p[0..n): its column count into *ncols (at
** most max, else -1), types into types[], values into vals[] (bytes point
** into p). 0, or -1 if it is not a well-formed row. */
int    rowfmt_decode(const uint8_t *p, size_t n, unsigned max, unsigned *ncols, uint8_t *types,
                     sochdb_value *vals);
/* The same, storing the values of the columns in mask only (bit j: column
** j; vals[] of the others are left alone); every column is still checked. */
int    rowfmt_decode_some(const uint8_t *p, size_t n, unsigned max, uint64_t mask, unsigned *ncols,
                          uint8_t *types, sochdb_value *vals);


/* ---- the one-column filter --------------------------------------------------- */

/* col's value v passes when lo (if any) is below it (or equal when lo_incl)
** and hi (if any) above it (or equal when hi_incl); NULL never passes, nor
** does a double NaN. Values compare as their type: int64 and double
** numerically, bytes and strings by memcmp then length. */
struct rowfmt_filter {
  unsigned     col;
  unsigned     type;
  int          has_lo, lo_incl, has_hi, hi_incl;
  sochdb_value lo, hi;
};

/* 1 if v passes f. */
int    rowfmt_match(const struct rowfmt_filter *f, const sochdb_value *v);

/* 0 if no value in [min, max] (both non-NULL, f's type, no NaN) can pass f:
** a block with those bounds can be skipped. 1 otherwise. */
int    rowfmt_range_may_match(const struct rowfmt_filter *f, const sochdb_value *min, const sochdb_value *max);

#endif
