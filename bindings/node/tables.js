'use strict';
/*
 * tables.js — columnar tables for the Node.js binding: Table, TableScan, the
 * Transaction methods that use them (createTable, openTable, addColumn,
 * putRow, getRow, deleteRow, scanTable), Database#scanStats, and the
 * conversion of JS values to and from the C API's sochdb_value.
 *
 * A table holds rows of a fixed schema (named, typed columns; the first is
 * the primary key) in the database's key space, so every row operation
 * belongs to a transaction and behaves as a key-value write or read in it.
 *
 * Types: 'int64' (a safe-integer number or a BigInt; read back as a number
 * when it is a safe integer, else a BigInt), 'double' (number), 'bytes' (a
 * Buffer; Uint8Array, ArrayBuffer and strings, as UTF-8, are taken too) and
 * 'string' (a string, stored as UTF-8; Buffers and Uint8Arrays are taken too,
 * and bytes that are not UTF-8, which a C program may store, read back with
 * U+FFFD in their place: read such a column as bytes). NULL is null
 * (undefined is taken as null in a row given as an object).
 *
 * index.js calls attach() with its internals once, at load.
 */

const koffi = require('koffi');

const INT64 = 1;
const DOUBLE = 2;
const BYTES = 3;
const STRING = 4;
const NULLABLE = 0x1;
const TYPE_NAMES = { [INT64]: 'int64', [DOUBLE]: 'double', [BYTES]: 'bytes', [STRING]: 'string' };
const TYPES_BY_NAME = { int64: INT64, double: DOUBLE, bytes: BYTES, string: STRING };
const OPS = { '==': 1, '<': 2, '<=': 3, '>': 4, '>=': 5, between: 6 };
const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

function attach(x) {
  const { lib, check, usageError, copyOut, toBuffer, Cursor, Transaction, Database, NOTFOUND } = x;

  function typeCode(t, name) {
    const code = typeof t === 'string' ? TYPES_BY_NAME[t] : t;
    if (!TYPE_NAMES[code]) {
      throw new TypeError(`column ${JSON.stringify(name)}: unknown type ${JSON.stringify(t)} ` +
                          "('int64', 'double', 'bytes', 'string' or sochdb.types.*)");
    }
    return code;
  }

  /** { name, type, nullable } from a column description. */
  function column(c) {
    if (c === null || typeof c !== 'object' || typeof c.name !== 'string') {
      throw new TypeError('a column is { name: string, type, nullable?: boolean }');
    }
    return { name: c.name, type: typeCode(c.type, c.name), nullable: !!c.nullable };
  }

  function cColumns(cols) {
    return cols.map((c) => ({ name: nameArg(c.name, 'column'), type: c.type, flags: c.nullable ? NULLABLE : 0 }));
  }

  /** v as a sochdb_value for col (a struct for koffi: a Buffer in .bytes stays alive through the call). */
  function toValue(v, col) {
    const out = { is_null: 0, i64: 0, f64: 0, bytes: null, len: 0 };
    if (v === null || v === undefined) {
      out.is_null = 1;
      return out;
    }
    const what = `column ${JSON.stringify(col.name)} is ${TYPE_NAMES[col.type]}`;
    if (col.type === INT64) {
      if (typeof v === 'bigint') {
        if (v < INT64_MIN || v > INT64_MAX) throw new RangeError(`${what}: ${v} is outside int64`);
      } else if (typeof v !== 'number' || !Number.isInteger(v)) {
        throw new TypeError(`${what}: an integer number or a BigInt, not ${typeof v === 'number' ? v : typeof v}`);
      } else if (!Number.isSafeInteger(v)) {
        throw new RangeError(`${what}: ${v} is not a safe integer (pass a BigInt)`);
      }
      out.i64 = v;
    } else if (col.type === DOUBLE) {
      if (typeof v !== 'number') throw new TypeError(`${what}: a number, not ${typeof v}`);
      out.f64 = v;
    } else {
      if (col.type === STRING && typeof v !== 'string' && !(v instanceof Uint8Array)) {
        throw new TypeError(`${what}: a string, not ${typeof v}`);
      }
      const b = toBuffer(v, `column ${JSON.stringify(col.name)}`);
      out.bytes = b.length ? b : null;
      out.len = b.length;
    }
    return out;
  }

  /** A copy of v as JS: the bytes it points to may not outlive the call. */
  function fromValue(v, type) {
    if (v.is_null) return null;
    // koffi gives a number up to 2^53 in size: one that is not a safe integer
    // would not be taken back (toValue), so it comes as a BigInt too
    if (type === INT64) return typeof v.i64 === 'number' && !Number.isSafeInteger(v.i64) ? BigInt(v.i64) : v.i64;
    if (type === DOUBLE) return v.f64;
    const b = copyOut(v.bytes, Number(v.len));
    return type === STRING ? b.toString('utf8') : b;
  }

  function nameArg(name, what) {
    if (typeof name !== 'string') throw new TypeError(`a ${what} name is a string, not ${typeof name}`);
    // the C API would read it cut short there: another name
    if (name.includes('\0')) throw new TypeError(`a ${what} name holds no NUL character: ${JSON.stringify(name)}`);
    return name;
  }

  // A table's C handle apart from its object: { p, scans, closing }. The C
  // scan reads its table's schema at every step, so the handle is freed once
  // the table is closed (or collected) and no scan of it is open.
  function freeTable(st) {
    st.closing = true;
    if (st.scans > 0 || st.p === null) return;
    const p = st.p;
    st.p = null;
    lib().tableClose(p);
  }
  const droppedTables = new FinalizationRegistry(freeTable);

  /**
   * An open table: its name, id and schema as it was opened (columns).
   * Serves any later transaction of the same Database; after addColumn
   * commits, open it again to use the new column. close() (or the garbage
   * collector) frees the handle, not the table.
   */
  class Table {
    constructor(p, db, name) {
      const a = lib();
      this.db = db;
      this.name = name;
      this._st = { p, scans: 0, closing: false };
      droppedTables.register(this, this._st, this._st);
      const cols = [null];
      const n = [0];
      const id = [0];
      check(a.tableSchema(p, cols, n, id));
      this.id = id[0];
      const raw = Number(n[0]) ? koffi.decode(cols[0], a.Column, Number(n[0])) : [];
      this.columns = Object.freeze(raw.map((c) => Object.freeze(
        { name: c.name, type: TYPE_NAMES[c.type], nullable: !!(c.flags & NULLABLE) })));
      this._types = raw.map((c) => c.type);
      this._index = new Map(raw.map((c, i) => [c.name, i]));
    }

    get closed() { return this._st.closing; }

    close() {
      droppedTables.unregister(this._st);
      freeTable(this._st);
    }

    _ptr(txn) {
      if (this._st.closing) throw usageError(`the table ${JSON.stringify(this.name)} is closed`);
      if (txn.db !== this.db) {
        throw usageError(`the table ${JSON.stringify(this.name)} was opened on another Database: open it there`);
      }
      return this._st.p;
    }

    _col(i) { return { name: this.columns[i].name, type: this._types[i] }; }

    /** The index of a column given by name or index. */
    columnIndex(c) {
      if (typeof c === 'string') {
        const i = this._index.get(c);
        if (i === undefined) throw new RangeError(`table ${JSON.stringify(this.name)} has no column ${JSON.stringify(c)}`);
        return i;
      }
      if (Number.isInteger(c) && c >= 0 && c < this.columns.length) return c;
      throw new RangeError(`table ${JSON.stringify(this.name)} has no column ${String(c)}`);
    }

    /** [the C column indices or null for all, the indices]. */
    _indices(columns) {
      if (columns === null || columns === undefined) return [null, this.columns.map((_, i) => i)];
      if (!Array.isArray(columns) || columns.length === 0) {
        throw new TypeError('columns: an array naming at least one column, or null for all');
      }
      const idx = columns.map((c) => this.columnIndex(c));
      return [idx, idx];
    }

    /** A full row: an array in schema order, or an object by column name (absent: null). */
    _row(row) {
      let vals = row;
      if (row !== null && typeof row === 'object' && !Array.isArray(row)) {
        for (const k of Object.keys(row)) {
          if (!this._index.has(k)) throw new RangeError(`table ${JSON.stringify(this.name)} has no column ${JSON.stringify(k)}`);
        }
        vals = this.columns.map((c) => row[c.name]);
      } else if (!Array.isArray(row)) {
        throw new TypeError('a row is an array of the columns\' values or an object by column name');
      }
      if (vals.length !== this.columns.length) {
        throw new RangeError(`table ${JSON.stringify(this.name)} has ${this.columns.length} columns, the row ${vals.length} values`);
      }
      return vals.map((v, i) => toValue(v, this._col(i)));
    }

    _pk(pk) {
      if (pk === null || pk === undefined) throw new TypeError('a primary key is never null');
      return toValue(pk, this._col(0));
    }
  }

  function scanFilter(table, where) {
    if (!Array.isArray(where) || (where.length !== 3 && where.length !== 4)) {
      throw new TypeError("where is [column, op, value] or [column, 'between', low, high]");
    }
    const op = OPS[where[1]];
    if (!op) throw new RangeError(`unknown filter op ${JSON.stringify(where[1])} (one of ${Object.keys(OPS).join(', ')})`);
    if ((op === OPS.between) !== (where.length === 4)) {
      throw new TypeError("'between' takes two bounds, every other op one");
    }
    const column = table.columnIndex(where[0]);
    const bounds = where.slice(2).map((v) => {
      if (v === null || v === undefined) throw new TypeError("a filter's bound is never null (NULL passes no filter)");
      return toValue(v, table._col(column));
    });
    return { column, op, value: bounds[0], value2: bounds[1] || toValue(null, table._col(column)) };
  }

  /**
   * Rows of a table in primary-key order (Transaction#scanTable), each an
   * array of the columns asked for (.columns names them). Only those columns
   * and the filter's are read from SSTables. Closed when exhausted, on
   * break, by close(), or when its transaction ends (then next() throws);
   * .stats holds what it cost once closed.
   */
  class TableScan extends Cursor {
    constructor(txn, table, { start = null, end = null, columns = null, where = null } = {}) {
      super();
      const a = lib();
      const [cidx, idx] = table._indices(columns);
      this.table = table; // kept open while the scan runs
      this.columns = idx.map((i) => table.columns[i].name);
      this.stats = null;
      this._types = idx.map((i) => table._types[i]);
      const filter = where === null || where === undefined ? null : scanFilter(table, where);
      const lo = start === null || start === undefined ? null : table._pk(start);
      const hi = end === null || end === undefined ? null : table._pk(end);
      const out = [null];
      check(a.tableScan(txn._ptr(), table._ptr(txn), lo, hi, cidx, cidx ? cidx.length : 0, filter, out));
      const st = table._st;
      st.scans++; // the table's handle stays until this scan is closed
      const statsOut = {};
      this._opened(txn, out[0], (s) => {
        a.scanClose(s, statsOut);
        this.stats = statsOut;
        st.scans--;
        if (st.closing) freeTable(st);
      });
      this._out = idx.map(() => ({}));
    }

    _step(s) {
      const rc = lib().scanNext(s, this._out);
      if (rc === NOTFOUND) return undefined;
      check(rc);
      return this._out.map((v, i) => fromValue(v, this._types[i]));
    }
  }

  Object.assign(Transaction.prototype, {
    /** Create table name (others see it once this transaction commits) and open it. columns:
     *  [{ name, type, nullable? }, ...]; the first is the primary key (int64, bytes or string). */
    createTable(name, columns) {
      if (!Array.isArray(columns)) throw new TypeError('createTable(name, columns): columns is an array');
      const cols = cColumns(columns.map(column));
      check(lib().tableCreate(this._ptr(), nameArg(name, 'table'), cols.length ? cols : null, cols.length));
      return this.openTable(name);
    },

    /** Open table name as this snapshot holds it (NotFoundError if none); with columns, InvalidError unless
     *  they are exactly its schema. The Table serves any later transaction of this Database. */
    openTable(name, columns = null) {
      const cols = columns === null || columns === undefined ? null : cColumns(columns.map(column));
      const out = [null];
      check(lib().tableOpen(this._ptr(), nameArg(name, 'table'), cols, cols ? cols.length : 0, out));
      return new Table(out[0], this.db, name);
    },

    /** Append a nullable column (older rows read it as null); open the table again to use it. */
    addColumn(table, { name, type }) {
      const col = { name: nameArg(name, 'column'), type: typeCode(type, name), flags: NULLABLE };
      check(lib().tableAddColumn(this._ptr(), table._ptr(this), col));
    },

    /** Insert or replace a row (an array in schema order, or an object by column name). */
    putRow(table, row) {
      const vals = table._row(row);
      check(lib().rowPut(this._ptr(), table._ptr(this), vals));
    },

    /** Delete the row with primary key pk (not an error if absent). */
    deleteRow(table, pk) {
      check(lib().rowDelete(this._ptr(), table._ptr(this), table._pk(pk)));
    },

    /** The row with primary key pk as an array of columns (names or indices; default all), or null. */
    getRow(table, pk, { columns = null } = {}) {
      const key = table._pk(pk);
      const [cidx, idx] = table._indices(columns);
      const out = idx.map(() => ({}));
      const rc = lib().rowGet(this._ptr(), table._ptr(this), key, cidx, cidx ? cidx.length : 0, out);
      if (rc === NOTFOUND) return null;
      check(rc);
      return out.map((v, j) => fromValue(v, table._types[idx[j]])); // copied: the bytes live until the transaction ends
    },

    /** Rows with start <= primary key < end in key order, each an array of columns (default all), that pass
     *  where: [column, op, value] (op '==', '<', '<=', '>', '>=') or [column, 'between', low, high]. */
    scanTable(table, options) {
      return new TableScan(this, table, options);
    },
  });

  /** sochdb_scan_stats_get: the cost of every table scan closed in any process since the region was made. */
  Database.prototype.scanStats = function scanStats() {
    const out = {};
    check(lib().scanStatsGet(this._handle(), out));
    return out;
  };

  return { Table, TableScan, types: { INT64, DOUBLE, BYTES, STRING } };
}

module.exports = { attach };
