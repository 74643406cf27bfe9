'use strict';
/*
 * sochdb — Node.js bindings for sochdb through koffi (FFI: no compiler at
 * install time). Every call is synchronous, like better-sqlite3's: a SYNC
 * commit blocks the event loop until the daemon's group commit fdatasync'd it
 * (milliseconds); use { sync: false } (ASYNC) where that matters. A
 * read-write begin or commit also waits out the write stall (writers faster
 * than the daemon's flushes), up to busy_timeout_ms.
 *
 *   const sochdb = require('sochdb');
 *   const db = sochdb.open('/var/lib/myapp/db');
 *   db.transaction((txn) => txn.put('users/1', 'Alice'));        // commit, or abort on throw
 *   db.run((txn) => { ... });                                     // same, retried on ConflictError
 *   db.transaction((txn) => txn.get('users/1'), { readonly: true }); // <Buffer 41 6c 69 63 65>
 *   db.close();
 *
 * The library is looked for in this order: $SOCHDB_LIBRARY; the dynamic
 * linker's search (libsochdb.so.0, libsochdb.so: LD_LIBRARY_PATH, ldconfig's
 * cache, an installed library); build/libsochdb.so under the current
 * directory and each of its parents, then under the checkout holding this
 * package (bindings/node/../../build). It finds sochdbd next to itself.
 *
 * Handles are per process: a child_process.fork()ed (or cluster) worker is a
 * new process and opens its own handle with sochdb.open(path).
 */

const fs = require('fs');
const path = require('path');
const koffi = require('koffi');

// ------------------------------------------------------------------ codes

const OK = 0;
const NOTFOUND = 1;
const CONFLICT = 2;
const BUSY = 3;
const INVALID = 4;
const CORRUPT = 5;
const IO = 6;
const NOMEM = 7;
const VERSION = 8;
const DAEMON = 9;

const CODE_NAMES = {
  [OK]: 'SOCHDB_OK',
  [NOTFOUND]: 'SOCHDB_NOTFOUND',
  [CONFLICT]: 'SOCHDB_CONFLICT',
  [BUSY]: 'SOCHDB_BUSY',
  [INVALID]: 'SOCHDB_INVALID',
  [CORRUPT]: 'SOCHDB_CORRUPT',
  [IO]: 'SOCHDB_IO',
  [NOMEM]: 'SOCHDB_NOMEM',
  [VERSION]: 'SOCHDB_VERSION',
  [DAEMON]: 'SOCHDB_DAEMON',
};

const TXN_READONLY = 0x1;
const SYNC = 0x0;
const ASYNC = 0x1;
const MAX_KEY = 4096;
const MAX_VALUE = 16 * 1024 * 1024;
const MAX_TXNS_PER_HANDLE = 128;

// ------------------------------------------------------------------ errors

/** Any error returned by the library: .code (SOCHDB_* number), .codeName,
 *  .reason (sochdb_strerror) and .detail (sochdb_last_error, may be ''). */
class SochdbError extends Error {
  constructor(code, reason, detail = '') {
    const codeName = CODE_NAMES[code] || `SOCHDB_${code}`;
    super(`${codeName}: ${reason}${detail ? ` (${detail})` : ''}`);
    this.name = this.constructor.name;
    this.code = code;
    this.codeName = codeName;
    this.reason = reason;
    this.detail = detail;
  }
}
/** Opening a missing database with createIfMissing: false (get returns null instead). */
class NotFoundError extends SochdbError {}
/** Write-write conflict: nothing was applied; retry the whole transaction (db.run does). */
class ConflictError extends SochdbError {}
/** No room within busyTimeoutMs, every process slot taken, or >128 open transactions. */
class BusyError extends SochdbError {}
/** Bad argument, write in a read-only transaction, or a closed/finished object. */
class InvalidError extends SochdbError {}
class CorruptError extends SochdbError {}
class IoError extends SochdbError {}
class NoMemoryError extends SochdbError {}
class VersionError extends SochdbError {}
/** The daemon could not be started or reached (from a SYNC commit: applied, durability unconfirmed). */
class DaemonError extends SochdbError {}

const ERROR_CLASSES = {
  [NOTFOUND]: NotFoundError,
  [CONFLICT]: ConflictError,
  [BUSY]: BusyError,
  [INVALID]: InvalidError,
  [CORRUPT]: CorruptError,
  [IO]: IoError,
  [NOMEM]: NoMemoryError,
  [VERSION]: VersionError,
  [DAEMON]: DaemonError,
};

function errorClass(code) {
  return ERROR_CLASSES[code] || SochdbError;
}

// ------------------------------------------------------------------ library

function candidatePaths() {
  const out = [];
  const add = (p) => { if (!out.includes(p)) out.push(p); };
  for (let dir = process.cwd(); ; dir = path.dirname(dir)) {
    add(path.join(dir, 'build', 'libsochdb.so'));
    if (path.dirname(dir) === dir) break;
  }
  add(path.resolve(__dirname, '..', '..', 'build', 'libsochdb.so'));
  return out;
}

let api = null;
let loadedFrom = null;
let types = null;

// koffi's type names are global to the process: declared once, so that a load
// that failed (a library without the sochdb symbols) can be retried and
// reports its own error again, not "Duplicate type name 'sochdb_options'".
function declareTypes() {
  if (types) return types;
  const Options = koffi.struct('sochdb_options', {
    region_bytes: 'size_t',
    memtable_bytes: 'size_t',
    busy_timeout_ms: 'unsigned int',
    daemon_path: 'const char *',
    create_if_missing: 'int',
    file_mode: 'unsigned int',
    cache_bytes: 'size_t',
  });
  const u32 = 'uint32_t';
  const u64 = 'uint64_t';
  const Stats = koffi.struct('sochdb_stats', {
    region_bytes: u64, memtable_bytes: u64, memtables_total: u32, memtables_in_use: u32,
    memtable_used_bytes: u64, processes_attached: u32, transactions_open: u32,
    last_commit_seq: u64, commits: u64, conflicts: u64, aborts: u64, keys_written: u64,
    processes_reaped: u64, dead_txns_rolled_back: u64, oldest_snapshot: u64, durable_seq: u64,
    wal_groups: u64, wal_records: u64, wal_bytes: u64, daemon_running: u32, wal_segments: u32,
    user_bytes: u64, flushes: u64, flush_bytes: u64, compactions: u64, compact_bytes_read: u64,
    compact_bytes_written: u64, compaction_debt_bytes: u64, wal_segments_removed: u64,
    sst_files: u32, l0_files: u32, sst_bytes: u64, cache_bytes: u64, cache_hits: u64,
    cache_misses: u64, cache_inserts: u64, cache_evictions: u64, write_stalls: u64, write_stall_us: u64,
    compact_throttle_us: u64, l0_stops: u64, l0_stop_us: u64,
  });
  koffi.opaque('sochdb');
  koffi.opaque('sochdb_txn');
  koffi.opaque('sochdb_iter');
  // columnar tables (tables.js)
  koffi.opaque('sochdb_table');
  koffi.opaque('sochdb_scan');
  const Column = koffi.struct('sochdb_column', { name: 'const char *', type: 'unsigned int', flags: 'unsigned int' });
  const Value = koffi.struct('sochdb_value', {
    is_null: 'int', i64: 'int64_t', f64: 'double', bytes: 'const void *', len: 'size_t',
  });
  koffi.struct('sochdb_filter', { column: 'unsigned int', op: 'unsigned int', value: Value, value2: Value });
  koffi.struct('sochdb_scan_stats', {
    scans: u64, rows: u64, blocks_read: u64, blocks_skipped: u64, blocks_direct: u64, bytes_read: u64,
    bytes_decompressed: u64,
  });
  types = { Options, Stats, Column };
  return types;
}

function loadLibrary() {
  if (api) return api;
  let lib = null;
  const env = process.env.SOCHDB_LIBRARY;
  if (env) {
    lib = koffi.load(env); // an explicit choice is never silently replaced
    loadedFrom = env;
  } else {
    const tried = [];
    for (const name of ['libsochdb.so.0', 'libsochdb.so', ...candidatePaths()]) {
      if (name.includes('/') && !fs.existsSync(name)) continue;
      try {
        lib = koffi.load(name);
        loadedFrom = name;
        break;
      } catch (e) {
        tried.push(`${name}: ${e.message}`);
      }
    }
    if (!lib) {
      throw new Error('libsochdb.so not found: set $SOCHDB_LIBRARY to its path, install it ' +
                      '(cmake --install build), or build it in <checkout>/build' +
                      (tried.length ? `\n  ${tried.join('\n  ')}` : ''));
    }
  }

  const { Options, Stats, Column } = declareTypes();
  const loaded = {
    Options,
    Stats,
    Column,
    strerror: lib.func('const char *sochdb_strerror(int err)'),
    lastError: lib.func('const char *sochdb_last_error(void)'),
    open: lib.func('int sochdb_open(const char *dir, const sochdb_options *opts, _Out_ sochdb **out)'),
    close: lib.func('void sochdb_close(sochdb *db)'),
    begin: lib.func('int sochdb_txn_begin(sochdb *db, unsigned int flags, _Out_ sochdb_txn **out)'),
    put: lib.func('int sochdb_put(sochdb_txn *t, const void *key, size_t klen, const void *val, size_t vlen)'),
    del: lib.func('int sochdb_delete(sochdb_txn *t, const void *key, size_t klen)'),
    get: lib.func('int sochdb_get(sochdb_txn *t, const void *key, size_t klen, _Out_ void **val, _Out_ size_t *vlen)'),
    commit: lib.func('int sochdb_commit(sochdb_txn *t, unsigned int flags)'),
    abort: lib.func('void sochdb_abort(sochdb_txn *t)'),
    // transient: next() copies each pair out before the next step, so the
    // transaction keeps no copy of what a scan read
    iterOpen: lib.func('int sochdb_iter_open_transient(sochdb_txn *t, const void *start, size_t slen, ' +
                       'const void *end, size_t elen, _Out_ sochdb_iter **out)'),
    iterNext: lib.func('int sochdb_iter_next(sochdb_iter *it, _Out_ void **key, _Out_ size_t *klen, ' +
                       '_Out_ void **val, _Out_ size_t *vlen)'),
    iterClose: lib.func('void sochdb_iter_close(sochdb_iter *it)'),
    statsGet: lib.func('int sochdb_stats_get(sochdb *db, _Out_ sochdb_stats *out)'),
    regionPath: lib.func('const char *sochdb_region_path(sochdb *db)'),
    // copyOut: koffi.view() leaks ~220 bytes of native memory per call (koffi 3.3.4)
    memcpy: lib.func('void *memcpy(void *dst, const void *src, size_t n)'),
    // columnar tables (tables.js)
    tableCreate: lib.func('int sochdb_table_create(sochdb_txn *t, const char *name, const sochdb_column *cols, ' +
                          'size_t ncols)'),
    tableOpen: lib.func('int sochdb_table_open(sochdb_txn *t, const char *name, const sochdb_column *cols, ' +
                        'size_t ncols, _Out_ sochdb_table **out)'),
    tableClose: lib.func('void sochdb_table_close(sochdb_table *tb)'),
    tableSchema: lib.func('int sochdb_table_schema(sochdb_table *tb, _Out_ void **cols, _Out_ size_t *ncols, ' +
                          '_Out_ uint32_t *id)'),
    tableAddColumn: lib.func('int sochdb_table_add_column(sochdb_txn *t, sochdb_table *tb, const sochdb_column *col)'),
    rowPut: lib.func('int sochdb_row_put(sochdb_txn *t, sochdb_table *tb, const sochdb_value *values)'),
    rowDelete: lib.func('int sochdb_row_delete(sochdb_txn *t, sochdb_table *tb, const sochdb_value *pk)'),
    rowGet: lib.func('int sochdb_row_get(sochdb_txn *t, sochdb_table *tb, const sochdb_value *pk, ' +
                     'const unsigned int *cols, size_t ncols, _Out_ sochdb_value *out)'),
    tableScan: lib.func('int sochdb_table_scan(sochdb_txn *t, sochdb_table *tb, const sochdb_value *start, ' +
                        'const sochdb_value *end, const unsigned int *cols, size_t ncols, ' +
                        'const sochdb_filter *filter, _Out_ sochdb_scan **out)'),
    scanNext: lib.func('int sochdb_scan_next(sochdb_scan *s, _Out_ sochdb_value *out)'),
    scanClose: lib.func('void sochdb_scan_close(sochdb_scan *s, _Out_ sochdb_scan_stats *stats)'),
    scanStatsGet: lib.func('int sochdb_scan_stats_get(sochdb *db, _Out_ sochdb_scan_stats *out)'),
  };
  api = loaded; // only once every function is found
  return api;
}

/** The path or soname the library was loaded from (null before first use). */
function libraryPath() {
  return loadedFrom;
}

/** The error for a code just returned, with the detail of sochdb_last_error()
 *  (read first: it is only valid until this thread's next sochdb call). */
function errorFor(code) {
  const a = loadLibrary();
  const detail = a.lastError() || '';
  const reason = a.strerror(code);
  const Cls = errorClass(code);
  return new Cls(code, reason, detail);
}

function check(rc) {
  if (rc !== OK) throw errorFor(rc);
}

function usageError(detail) {
  return new InvalidError(INVALID, 'invalid argument', detail);
}

const EMPTY = Buffer.alloc(1); // a non-NULL pointer for zero-length values

function toBuffer(x, what) {
  if (Buffer.isBuffer(x)) return x;
  if (typeof x === 'string') return Buffer.from(x, 'utf8');
  if (x instanceof Uint8Array) return Buffer.from(x.buffer, x.byteOffset, x.byteLength);
  if (x instanceof ArrayBuffer) return Buffer.from(x);
  throw new TypeError(`${what} must be a Buffer, Uint8Array or string, not ${x === null ? 'null' : typeof x}`);
}

/** A copy of len bytes at ptr (zero-copy memory must not outlive the transaction). */
function copyOut(ptr, len) {
  if (!len) return Buffer.alloc(0);
  const out = Buffer.allocUnsafe(len);
  api.memcpy(out, ptr, len);
  return out;
}

function prefixEnd(prefix) {
  let n = prefix.length;
  while (n > 0 && prefix[n - 1] === 0xff) n--;
  if (n === 0) return null;
  const end = Buffer.from(prefix.subarray(0, n));
  end[n - 1] += 1;
  return end;
}

function isThenable(x) {
  return x !== null && (typeof x === 'object' || typeof x === 'function') && typeof x.then === 'function';
}

function sleepMs(ms) {
  if (ms > 0) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

// ------------------------------------------------------------------ classes

const OPTION_MAX = { region_bytes: Number.MAX_SAFE_INTEGER, memtable_bytes: Number.MAX_SAFE_INTEGER,
  cache_bytes: Number.MAX_SAFE_INTEGER, busy_timeout_ms: 0xffffffff, file_mode: 0xffffffff };

/** s as the C library gets it: a NUL inside would cut it short there. A
 *  Buffer is passed as its bytes (NUL-terminated), like fs does: decoded as
 *  UTF-8, bytes that are not would become U+FFFD, another file name. */
function cPath(s, what) {
  let p;
  if (typeof s === 'string') p = s;
  else if (Buffer.isBuffer(s)) p = s;
  else if (s instanceof URL) p = require('url').fileURLToPath(s);
  // String(undefined) would open (and create) a database named "undefined" in the cwd
  else throw new TypeError(`the ${what} must be a string, Buffer or file: URL, not ${s === null ? 'null' : typeof s}`);
  if (p.includes(typeof p === 'string' ? '\0' : 0)) {
    throw new TypeError(`the ${what} contains a NUL byte: ${JSON.stringify(p.toString())}`);
  }
  return typeof p === 'string' ? p : Buffer.concat([p, Buffer.alloc(1)]);
}

const OPTION_NAMES = {
  regionBytes: 'region_bytes',
  memtableBytes: 'memtable_bytes',
  cacheBytes: 'cache_bytes',
  busyTimeoutMs: 'busy_timeout_ms',
  fileMode: 'file_mode',
};

function makeOptions(opts) {
  if (opts == null) return null;
  const o = {
    region_bytes: 0, memtable_bytes: 0, busy_timeout_ms: 0, daemon_path: null,
    create_if_missing: 0, file_mode: 0, cache_bytes: 0,
  };
  for (const [k, v] of Object.entries(opts)) {
    // null is unset, as None is in Python and null already was for daemonPath:
    // { createIfMissing: null } used to mean false (NotFoundError on a new database)
    if (v === undefined || v === null) continue;
    if (k in OPTION_NAMES) {
      const max = OPTION_MAX[OPTION_NAMES[k]];
      if (!Number.isInteger(v) || v < 0 || v > max) throw new RangeError(`option ${k} must be an integer in [0, ${max}], not ${v}`);
      o[OPTION_NAMES[k]] = v;
    } else if (k === 'daemonPath') {
      o.daemon_path = cPath(v, 'daemon path');
    } else if (k === 'createIfMissing') {
      o.create_if_missing = v ? 1 : -1;
    } else {
      throw new TypeError(`unknown sochdb option ${k} (known: ${[...Object.keys(OPTION_NAMES), 'daemonPath', 'createIfMissing'].join(', ')})`);
    }
  }
  return o;
}

// A worker thread's handles, closed when the worker ends (its 'exit' event:
// it returned, threw or called process.exit()). A handle left open would hold
// one of the region's 256 process slots, and its transactions' snapshots, for
// as long as the process lives: the process is alive, so nobody reaps them.
// (worker.terminate() ends a worker without running JavaScript: close first.)
const workerDatabases = new Set();
let workerExitHook = false;

function closeWorkerDatabases() {
  for (const db of [...workerDatabases]) db.close();
}

class Database {
  /** Use sochdb.open(). */
  constructor(dir, opts) {
    const a = loadLibrary();
    const cdir = cPath(dir, 'database path');
    this.path = typeof cdir === 'string' ? cdir : cdir.subarray(0, -1).toString();
    this._txns = new Set(); // the states (below) of its open transactions
    const out = [null];
    check(a.open(cdir, makeOptions(opts), out));
    // The handle apart from this object, for a close when it is collected.
    this._d = { h: out[0], txns: this._txns };
    droppedDatabases.register(this, this._d, this._d);
    if (!require('worker_threads').isMainThread) {
      workerDatabases.add(this);
      if (!workerExitHook) {
        process.on('exit', closeWorkerDatabases);
        workerExitHook = true;
      }
    }
  }

  get closed() { return this._d.h === null; }

  _handle() {
    if (this._d.h === null) throw usageError(`the database ${this.path} is closed`);
    return this._d.h;
  }

  /** Abort the transactions still open and detach. Idempotent. */
  close() {
    workerDatabases.delete(this);
    closeHandle(this._d);
  }

  /** Begin a transaction for manual control (commit()/abort() it yourself). */
  begin({ readonly = false, sync = true } = {}) {
    return new Transaction(this, readonly, sync);
  }

  /**
   * Run fn(txn) in a new transaction: commit when it returns (SYNC unless
   * { sync: false }), abort when it throws. Returns what fn returned. fn must
   * be synchronous (a returned Promise aborts the transaction and throws).
   */
  transaction(fn, { readonly = false, sync = true } = {}) {
    if (typeof fn !== 'function') throw new TypeError('transaction(fn, options): fn must be a function');
    const txn = this.begin({ readonly, sync });
    let result;
    try {
      result = fn(txn);
      if (isThenable(result)) {
        throw new TypeError('the transaction function returned a Promise: it must be synchronous ' +
                            '(all sochdb calls are); the transaction was aborted');
      }
    } catch (e) {
      txn.abort();
      throw e;
    }
    if (!txn.closed) txn.commit();
    return result;
  }

  /** transaction(), retried (whole, fresh snapshot) on ConflictError at most `retries` more times. */
  run(fn, { readonly = false, sync = true, retries = 100, backoffMs = 0.1, maxBackoffMs = 10 } = {}) {
    for (let attempt = 0; ; attempt++) {
      try {
        return this.transaction(fn, { readonly, sync });
      } catch (e) {
        if (!(e instanceof ConflictError) || attempt >= retries) throw e;
        sleepMs(Math.random() * Math.min(maxBackoffMs, backoffMs * 2 ** Math.min(attempt, 16)));
      }
    }
  }

  /** One key in a fresh read-only snapshot (Buffer, or null if absent). */
  get(key) { return this.transaction((t) => t.get(key), { readonly: true }); }
  /** One key written in its own transaction (retried on conflict). */
  put(key, value, { sync = true } = {}) { this.run((t) => t.put(key, value), { sync }); }
  delete(key, { sync = true } = {}) { this.run((t) => t.delete(key), { sync }); }

  /** sochdb_stats_get as an object (counters summed over all processes). */
  stats() {
    const out = {};
    check(api.statsGet(this._handle(), out));
    return out;
  }

  /** The shared region file (under /dev/shm or $SOCHDB_SHM_DIR). */
  get regionPath() { return api.regionPath(this._handle()); }
}

// A transaction's C state, apart from its object: { t, iters, owner } (iters:
// its open scans' states { it, owner, cut, free }: free(it) closes a key-value
// scan's iterator or a table scan's; owner: the set that lists it). The
// database lists the states of its open transactions, not the objects, so that
// a transaction dropped unfinished is collected, and aborted then, as Python's
// binding does: it would otherwise keep one of the handle's 128 transactions,
// and its snapshot, until db.close().
function closeIter(is) {
  const it = is.it;
  if (it === null) return;
  is.it = null;
  is.owner.delete(is);
  is.free(it);
}

function takeTxn(s) {
  for (const is of [...s.iters]) {
    is.cut = true; // cut short: its next() throws, never a silent end
    closeIter(is);
  }
  const t = s.t;
  s.t = null;
  s.owner.delete(s);
  droppedTxns.unregister(s);
  return t;
}

function abortTxn(s) {
  const t = takeTxn(s);
  if (t !== null) api.abort(t);
}

// A live scan holds its transaction, so a collected one has none open either.
// After db.close() the state is already taken: nothing is freed twice.
const droppedTxns = new FinalizationRegistry(abortTxn);

// A database: { h, txns }. One dropped unclosed is closed when collected,
// as Python's binding does: it would otherwise hold one of the region's 256
// process slots (shared by every process) until this process exits. Its
// transactions hold it, so they are unreachable too.
function closeHandle(d) {
  const h = d.h;
  if (h === null) return;
  d.h = null;
  droppedDatabases.unregister(d);
  for (const s of [...d.txns]) abortTxn(s);
  api.close(h);
}

const droppedDatabases = new FinalizationRegistry(closeHandle);

class Transaction {
  constructor(db, readonly, sync) {
    this.db = db;
    this.readonly = !!readonly;
    this.sync = sync !== false;
    const out = [null];
    check(api.begin(db._handle(), readonly ? TXN_READONLY : 0, out));
    this._s = { t: out[0], iters: new Set(), owner: db._txns };
    db._txns.add(this._s);
    droppedTxns.register(this, this._s, this._s);
  }

  /** True once committed, aborted, or its database closed. */
  get closed() { return this._s.t === null; }

  _ptr() {
    if (this._s.t === null) throw usageError('the transaction is finished (committed, aborted or its database closed)');
    return this._s.t;
  }

  _take() { return takeTxn(this._s); }

  put(key, value) {
    const k = toBuffer(key, 'key');
    const v = toBuffer(value, 'value');
    check(api.put(this._ptr(), k.length ? k : EMPTY, k.length, v.length ? v : EMPTY, v.length));
  }

  delete(key) {
    const k = toBuffer(key, 'key');
    check(api.del(this._ptr(), k.length ? k : EMPTY, k.length));
  }

  /** The value (a copied Buffer) in this snapshot plus own writes, or null. */
  get(key) {
    const k = toBuffer(key, 'key');
    const val = [null];
    const len = [0];
    const rc = api.get(this._ptr(), k.length ? k : EMPTY, k.length, val, len);
    if (rc === NOTFOUND) return null;
    check(rc);
    return copyOut(val[0], Number(len[0]));
  }

  has(key) { return this.get(key) !== null; }

  /**
   * An iterator of [key, value] Buffers (copies) with start <= key < end in
   * byte order ({ start, end }, either may be omitted) or keys starting with
   * { prefix }. Closed when exhausted, on break, by close(), or when the
   * transaction ends.
   */
  scan({ start = null, end = null, prefix = null } = {}) {
    if (prefix !== null && prefix !== undefined) {
      if (start !== null || end !== null) throw new TypeError('scan(): give prefix or start/end, not both');
      const p = toBuffer(prefix, 'prefix');
      return new Scan(this, p.length ? p : null, p.length ? prefixEnd(p) : null);
    }
    const s = start === null || start === undefined ? null : toBuffer(start, 'start');
    const e = end === null || end === undefined ? null : toBuffer(end, 'end');
    return new Scan(this, s && s.length ? s : null, e && e.length ? e : null);
  }

  /** Apply every write atomically or none (ConflictError: retry). Always ends the transaction. */
  commit({ sync = this.sync } = {}) {
    const t = this._take();
    if (t === null) throw usageError('the transaction is finished (committed, aborted or its database closed)');
    check(api.commit(t, sync ? SYNC : ASYNC));
  }

  /** Discard the writes; a no-op on a finished transaction. */
  abort() {
    const t = this._take();
    if (t !== null) api.abort(t);
  }
}

/**
 * What a key-value Scan and a TableScan share: a C iterator that belongs to
 * one transaction, closed when exhausted, on break, by close(), or when the
 * transaction ends (then next() throws: never a silent end to a scan that was
 * not done). A subclass opens its iterator, calls _opened(txn, it, free), and
 * provides _step(it): the next value, or undefined at the end.
 */
class Cursor {
  _opened(txn, it, free) {
    this._txn = txn; // a live scan holds its transaction (droppedTxns aborts only unreachable ones)
    this._is = { it, owner: txn._s.iters, cut: false, free };
    txn._s.iters.add(this._is);
  }

  [Symbol.iterator]() { return this; }

  next() {
    if (this._is.it === null) {
      if (this._is.cut) {
        throw usageError('the scan was cut short: its transaction ended (committed, aborted or its database closed) before the scan was done');
      }
      return { done: true, value: undefined };
    }
    let value;
    try {
      value = this._step(this._is.it);
    } catch (e) {
      this.close();
      throw e;
    }
    if (value === undefined) {
      this.close();
      return { done: true, value: undefined };
    }
    return { done: false, value };
  }

  /** Called by for...of on break/throw. */
  return() {
    this.close();
    return { done: true, value: undefined };
  }

  /** All remaining items as an array. */
  toArray() { return [...this]; }

  close() { closeIter(this._is); }
}

class Scan extends Cursor {
  constructor(txn, start, end) {
    super();
    const out = [null];
    check(api.iterOpen(txn._ptr(), start, start ? start.length : 0, end, end ? end.length : 0, out));
    this._opened(txn, out[0], api.iterClose);
    this._k = [null]; this._kl = [0]; this._v = [null]; this._vl = [0];
  }

  _step(it) {
    const rc = api.iterNext(it, this._k, this._kl, this._v, this._vl);
    if (rc === NOTFOUND) return undefined;
    check(rc);
    return [copyOut(this._k[0], Number(this._kl[0])), copyOut(this._v[0], Number(this._vl[0]))];
  }
}

const tables = require('./tables').attach({
  lib: loadLibrary, check, usageError, copyOut, toBuffer, Cursor, Transaction, Database, NOTFOUND,
});

/**
 * Open (creating if missing) the database in directory dir. Options (all
 * optional): regionBytes, memtableBytes, cacheBytes, busyTimeoutMs,
 * daemonPath, createIfMissing (default true), fileMode (e.g. 0o660).
 */
function open(dir, opts) {
  return new Database(dir, opts);
}

module.exports = {
  open,
  Database,
  Transaction,
  Scan,
  Table: tables.Table,
  TableScan: tables.TableScan,
  types: tables.types,
  SochdbError,
  NotFoundError,
  ConflictError,
  BusyError,
  InvalidError,
  CorruptError,
  IoError,
  NoMemoryError,
  VersionError,
  DaemonError,
  errorClass,
  libraryPath,
  candidatePaths,
  codes: { OK, NOTFOUND, CONFLICT, BUSY, INVALID, CORRUPT, IO, NOMEM, VERSION, DAEMON },
  CODE_NAMES,
  MAX_KEY,
  MAX_VALUE,
  MAX_TXNS_PER_HANDLE,
};
