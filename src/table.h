/*
** table.h — what the two halves of the table API share: the table handle
** (src/table.c: schemas, handles, row puts, gets and deletes) and its scans
** (src/tablescan.c). Rows and keys are encoded as rowfmt.h says.
*/
#ifndef SOCHDB_TABLE_H
#define SOCHDB_TABLE_H

#include "sochdb.h"

#include "rowfmt.h"

#include <stddef.h>
#include <stdint.h>

struct sochdb_table {
  sochdb        *db;
  uint64_t       serial;              /* unique in the process: what a transaction's check remembers */
  uint32_t       id;
  uint32_t       gen;                 /* the schema's generation: add_column bumps it */
  char           name[SOCHDB_MAX_NAME + 1];
  size_t         ncols;
  sochdb_column  cols[SOCHDB_MAX_COLUMNS];               /* names point into names[] */
  char           names[SOCHDB_MAX_COLUMNS][SOCHDB_MAX_NAME + 1];
  uint8_t        types[SOCHDB_MAX_COLUMNS];
};

/* SOCHDB_OK if t is a live transaction and tb a table opened on t's
** database handle whose columns are, in t's snapshot, still the table's
** first columns under the same id (checked at t's first use of tb, read
** from the stored schema); else SOCHDB_INVALID (or an error of that read),
** with the message set. */
int    sdb_table_check(sochdb_txn *t, const sochdb_table *tb);

/* The key of tb's row with primary key pk into key (room for SOCHDB_MAX_KEY
** bytes); its length, or 0 with SOCHDB_INVALID set when pk is too long. */
size_t sdb_row_key(const sochdb_table *tb, const sochdb_value *pk, uint8_t *key);

/* Decode a stored row of tb into vals[] (bytes point into p; only the
** columns in mask, bit j for column j): its column count into *ncols.
** SOCHDB_CORRUPT (message set) if it is not a row of tb's types. */
int    sdb_row_decode(const sochdb_table *tb, const uint8_t *p, size_t n, uint64_t mask, unsigned *ncols,
                      sochdb_value *vals);

/* Column c of a decoded row of ncols columns: NULL past its end. */
void   sdb_row_column(const sochdb_value *vals, unsigned ncols, unsigned c, sochdb_value *out);

/* SOCHDB_OK, or SOCHDB_CORRUPT (message set) when v, read from a stored row
** as tb's column c, is NULL where c is not nullable: no row put writes that
** (columns added later are nullable), so the row is damaged. */
int    sdb_row_check_null(const sochdb_table *tb, unsigned c, const sochdb_value *v);
/* out[i] = column cols[i] (cols NULL: column i) of a decoded row of nv
** columns, for i < n, each checked by sdb_row_check_null: SOCHDB_OK or its
** SOCHDB_CORRUPT. */
int    sdb_row_columns_out(const sochdb_table *tb, const sochdb_value *vals, unsigned nv, const unsigned *cols,
                           size_t n, sochdb_value *out);

/* A columnar table's reserved key and its value as a dump or a copy carries
** them (sochdb load): SOCHDB_OK when key is a schema (FF FF 00 "schema/"
** NAME) whose value decodes, the next table id (FF FF 00 "next_table_id",
** a u32 above 0) or a row (FF FF 01, a table id above 0, a primary key)
** whose value is a well-formed row; SOCHDB_INVALID when the key is none of
** them, SOCHDB_CORRUPT when its value is not what the key says; the message
** set. Such a record written as it is would break the table (or table
** creation) for good: nothing outside the engine can rewrite it. */
/* The schemas of the records checked so far, for the rows after them (a
** dump is in key order: every schema before every row). Zeroed to start;
** sdb_table_records_free when done. */
struct sdb_table_records {
  sochdb_table **tables;
  size_t         n, cap;
};
/* Also, across records: a row must belong to a table a schema before it
** named, decode as that table's columns (types, NULLs only where allowed),
** and two schemas may not name one table id (SOCHDB_CORRUPT). */
int    sdb_table_record_check(struct sdb_table_records *seen, const uint8_t *key, size_t klen, const uint8_t *val,
                              size_t vlen);
void   sdb_table_records_free(struct sdb_table_records *seen);

#endif
