'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const { sochdb, withDb, tempDb } = require('./helpers');

const B = (s) => Buffer.from(s);

test('put, get, delete round trip', () => withDb((db) => {
  db.transaction((t) => {
    t.put('users/1', 'Alice');
    t.put(B('users/2'), B('Bob'));
  });
  db.transaction((t) => {
    assert.deepEqual(t.get('users/1'), B('Alice'));
    assert.deepEqual(t.get('users/2'), B('Bob'));
    assert.equal(t.get('users/3'), null);
    assert.equal(t.has('users/1'), true);
  }, { readonly: true });
  db.transaction((t) => {
    t.delete('users/1');
    t.delete('never-existed');
  });
  assert.equal(db.get('users/1'), null);
  assert.deepEqual(db.get('users/2'), B('Bob'));
}));

test('keys and values: strings, Uint8Array, empty and binary values', () => withDb((db) => {
  db.transaction((t) => {
    t.put('text', 'välue');
    t.put(new Uint8Array([1, 2, 3]), new Uint8Array([4, 5]));
    t.put('empty', '');
    t.put(Buffer.from([0, 0xff]), Buffer.from([0, 1, 2]));
    assert.throws(() => t.put(42, 'x'), TypeError);
    assert.throws(() => t.get(null), TypeError);
  });
  assert.deepEqual(db.get('text'), Buffer.from('välue', 'utf8'));
  assert.deepEqual(db.get(Buffer.from([1, 2, 3])), Buffer.from([4, 5]));
  assert.deepEqual(db.get('empty'), Buffer.alloc(0)); // present and empty, not null
  assert.deepEqual(db.get(Buffer.from([0, 0xff])), Buffer.from([0, 1, 2]));
  const big = Buffer.alloc(1 << 20, 7);
  db.put('big', big);
  assert.ok(db.get('big').equals(big));
}));

test('transaction returns, commits on return and aborts on throw', () => withDb((db) => {
  assert.equal(db.transaction((t) => { t.put('kept', '1'); return 42; }), 42);
  assert.throws(() => db.transaction((t) => { t.put('dropped', '1'); throw new RangeError('boom'); }), RangeError);
  assert.throws(() => db.transaction(async (t) => { t.put('async', '1'); }), /synchronous/);
  assert.deepEqual(db.get('kept'), B('1'));
  assert.equal(db.get('dropped'), null);
  assert.equal(db.get('async'), null);
  db.transaction((t) => { t.put('explicit', '1'); t.commit({ sync: false }); });
  db.transaction((t) => { t.put('aborted', '1'); t.abort(); });
  assert.deepEqual(db.get('explicit'), B('1'));
  assert.equal(db.get('aborted'), null);
  db.transaction((t) => t.put('async-commit', '1'), { sync: false });
  assert.deepEqual(db.get('async-commit'), B('1'));
}));

test('own writes and snapshot isolation', () => withDb((db) => {
  db.put('a', '1');
  const reader = db.begin({ readonly: true });
  const writer = db.begin();
  writer.put('a', '2');
  assert.deepEqual(writer.get('a'), B('2'));
  assert.deepEqual(db.get('a'), B('1'));
  writer.commit();
  assert.deepEqual(db.get('a'), B('2'));
  assert.deepEqual(reader.get('a'), B('1'));
  reader.abort();
}));

test('a finished transaction refuses use', () => withDb((db) => {
  const t = db.begin();
  t.put('k', 'v');
  t.commit();
  for (const call of [() => t.get('k'), () => t.put('k', 'v'), () => t.commit(), () => t.scan()]) {
    assert.throws(call, (e) => e instanceof sochdb.InvalidError && e.code === sochdb.codes.INVALID);
  }
  t.abort(); // no-op
}));

test('read-only transactions refuse writes', () => withDb((db) => {
  db.put('k', 'v');
  db.transaction((t) => {
    assert.throws(() => t.put('k', 'x'), (e) => e instanceof sochdb.InvalidError && /read-only/.test(e.message));
    assert.throws(() => t.delete('k'), sochdb.InvalidError);
    assert.deepEqual(t.get('k'), B('v'));
  }, { readonly: true });
}));

// 0xFF 0xFF ... is reserved for columnar tables: refused by put/get/delete.
const KEYS = ['00', '0000', '61', '6100', '6162', '62', '6261', '7f', '80', 'ff', 'fffe'].map((h) => Buffer.from(h, 'hex'));
const sorted = [...KEYS].sort(Buffer.compare);
const hex = (pairs) => pairs.map(([k]) => k.toString('hex'));

function fill(db) {
  db.transaction((t) => { for (const k of [...KEYS].reverse()) t.put(k, Buffer.concat([B('v:'), k])); });
}

test('scan is in byte order, with half-open bounds and prefixes', () => withDb((db) => {
  fill(db);
  db.transaction((t) => {
    const all = t.scan().toArray();
    assert.deepEqual(hex(all), sorted.map((k) => k.toString('hex')));
    for (const [k, v] of all) assert.deepEqual(v, Buffer.concat([B('v:'), k]));
    const cases = [[null, null], ['61', null], [null, '62'], ['61', '62'], ['6100', '6261'], ['80', null], ['62', '61']];
    for (const [s, e] of cases) {
      const start = s && Buffer.from(s, 'hex');
      const end = e && Buffer.from(e, 'hex');
      const want = sorted.filter((k) => (!start || Buffer.compare(k, start) >= 0) && (!end || Buffer.compare(k, end) < 0));
      assert.deepEqual(hex(t.scan({ start, end }).toArray()), want.map((k) => k.toString('hex')), `[${s}, ${e})`);
    }
    assert.deepEqual(hex(t.scan({ prefix: 'a' }).toArray()), ['61', '6100', '6162']);
    assert.deepEqual(hex(t.scan({ prefix: Buffer.from('ff', 'hex') }).toArray()), ['ff', 'fffe']);
    assert.throws(() => t.get(Buffer.from('ffff', 'hex')), sochdb.InvalidError);
    assert.throws(() => t.scan({ start: 'a', prefix: 'a' }), TypeError);
  }, { readonly: true });
}));

test('scan sees own writes; break and commit close iterators', () => withDb((db) => {
  fill(db);
  db.transaction((t) => {
    t.delete('a');
    t.put('aa', 'mine');
    assert.deepEqual(hex(t.scan({ prefix: 'a' }).toArray()), ['6100', '6161', '6162']);
    for (const [k] of t.scan()) { assert.ok(k); break; } // return() closes it
    t.abort();
  });
  const t = db.begin();
  const it = t.scan();
  assert.equal(it.next().done, false);
  t.put('new', '1');
  t.commit(); // closes the open iterator first: cut short, it says so
  assert.throws(() => it.next(), (e) => e instanceof sochdb.InvalidError && /cut short/.test(e.message));
  const r = db.begin({ readonly: true });
  const own = r.scan();
  own.next();
  own.close(); // closed by its user: a plain end
  assert.equal(own.next().done, true);
  r.abort();
}));

test('stats', () => withDb((db) => {
  const before = db.stats();
  for (const k of ['commits', 'conflicts', 'aborts', 'processes_attached', 'last_commit_seq', 'daemon_running']) {
    assert.equal(typeof before[k], 'number', k);
  }
  db.put('k', 'v');
  const after = db.stats();
  assert.equal(after.commits, before.commits + 1);
  assert.ok(after.last_commit_seq > before.last_commit_seq);
  // the struct's last fields: a binding shorter than the C struct lacks them
  assert.equal(after.write_stalls, 0);
  assert.equal(after.write_stall_us, 0);
  assert.match(db.regionPath, /\.region$/);
}));

test('close is idempotent and aborts open transactions', () => {
  const { dir, cleanup } = tempDb();
  try {
    const db = sochdb.open(dir);
    const t = db.begin();
    t.put('k', 'v');
    const it = t.scan();
    db.close();
    db.close();
    assert.ok(db.closed && t.closed);
    assert.throws(() => it.next(), (e) => e instanceof sochdb.InvalidError && /cut short/.test(e.message));
    assert.throws(() => db.begin(), sochdb.InvalidError);
    assert.throws(() => t.get('k'), sochdb.InvalidError);
    const db2 = sochdb.open(dir);
    assert.equal(db2.get('k'), null);
    db2.close();
  } finally {
    cleanup();
  }
});

test('options', () => {
  const { dir, cleanup } = tempDb();
  try {
    const db = sochdb.open(dir, { memtableBytes: 1 << 20, regionBytes: 64 << 20, busyTimeoutMs: 2000, fileMode: 0o600 });
    assert.equal(db.stats().memtable_bytes, 1 << 20);
    assert.equal(db.stats().region_bytes, 64 << 20);
    db.close();
    assert.throws(() => sochdb.open(dir, { noSuchOption: 1 }), TypeError);
    assert.throws(() => sochdb.open(dir, { regionBytes: -1 }), RangeError);
    // past the C field's width: the value used to be cut to its low bits
    assert.throws(() => sochdb.open(dir, { busyTimeoutMs: 2 ** 32 }), RangeError);
    assert.throws(() => sochdb.open(dir, { fileMode: 2 ** 32 + 0o600 }), RangeError);
    // a NUL would end the path early in C: another directory would be opened
    assert.throws(() => sochdb.open(`${dir}\0-elsewhere`), (e) => e instanceof TypeError && /NUL/.test(e.message));
    assert.throws(() => sochdb.open(dir, { daemonPath: '/bin/true\0x' }), TypeError);
    // null is unset, as in Python (None): the defaults, which create a missing database
    const fresh = `${dir}-null-options`;
    sochdb.open(fresh, { createIfMissing: null }).close();
    assert.ok(require('fs').existsSync(fresh));
    sochdb.open(fresh, { busyTimeoutMs: null, regionBytes: null, daemonPath: null }).close();
  } finally {
    cleanup();
  }
});

test('run retries the whole transaction on conflict', () => withDb((db) => {
  let calls = 0;
  const result = db.run((t) => {
    calls++;
    t.put('counter', `attempt ${calls}`);
    if (calls === 1) db.put('counter', 'interloper'); // commits first: ours conflicts
    return calls;
  });
  assert.equal(result, 2);
  assert.deepEqual(db.get('counter'), B('attempt 2'));
  assert.throws(() => db.run((t) => { t.put('c', '1'); db.put('c', '2'); }, { retries: 2, backoffMs: 0 }),
    sochdb.ConflictError);
}));

test('more than 128 open transactions is BUSY', () => withDb((db) => {
  const txns = Array.from({ length: sochdb.MAX_TXNS_PER_HANDLE }, () => db.begin({ readonly: true }));
  assert.throws(() => db.begin({ readonly: true }), (e) => e instanceof sochdb.BusyError && e.code === sochdb.codes.BUSY);
  for (const t of txns) t.abort();
  db.begin({ readonly: true }).abort();
}));

test('reads do not leak native memory', () => withDb((db) => {
  // koffi.view() leaked ~220 bytes per value copied out (200k gets: ~45 MiB)
  db.transaction((t) => { for (let i = 0; i < 10; i++) t.put(`k${i}`, Buffer.alloc(100, i)); });
  const anon = () => Number(/RssAnon:\s+(\d+)/.exec(require('fs').readFileSync('/proc/self/status', 'utf8'))[1]);
  db.transaction((t) => {
    for (let i = 0; i < 2000; i++) t.scan().toArray();
    const before = anon();
    for (let i = 0; i < 20000; i++) t.scan().toArray();   // 400k copies
    assert.ok(anon() - before < 40 * 1024, `RssAnon grew by ${anon() - before} KiB`);
  }, { readonly: true });
}));

test('a Buffer path is passed as its bytes, not decoded as UTF-8', () => {
  const fs = require('fs');
  const path = require('path');
  const { dir, cleanup } = tempDb();
  try {
    const parent = path.dirname(dir);
    // 0xff 0xfe is not UTF-8: decoded, it became U+FFFD U+FFFD, another directory
    const raw = Buffer.concat([Buffer.from(`${parent}/db-`), Buffer.from([0xff, 0xfe])]);
    const db = sochdb.open(raw);
    db.put('k', 'v');
    db.close();
    assert.ok(fs.existsSync(raw), 'the directory named by the bytes given');
    assert.deepEqual(fs.readdirSync(parent, { encoding: 'buffer' }), [Buffer.from([0x64, 0x62, 0x2d, 0xff, 0xfe])]);
    // the daemon path too: a sochdbd reached only through its raw name
    const daemon = Buffer.concat([Buffer.from(`${parent}/sochdbd-`), Buffer.from([0xff])]);
    fs.symlinkSync(process.env.SOCHDB_DAEMON || path.join(path.dirname(sochdb.libraryPath()), 'sochdbd'), daemon);
    const db2 = sochdb.open(`${parent}/db2`, { daemonPath: daemon });
    db2.close();
    assert.throws(() => sochdb.open(Buffer.from(`${parent}/x\0y`)), (e) => e instanceof TypeError && /NUL/.test(e.message));
  } finally {
    cleanup();
  }
});

test('a transaction dropped unfinished is aborted when collected', () => withDb(async (db) => {
  const v8 = require('v8');
  const vm = require('vm');
  v8.setFlagsFromString('--expose-gc');
  const gc = vm.runInNewContext('gc');
  const settle = async () => {
    for (let i = 0; i < 5; i++) { gc(); await new Promise((r) => setTimeout(r, 10)); }
  };
  // A handler that fails between begin and commit and forgets the abort: the
  // handle's 128 transactions were used up for good (BusyError ever after).
  const handler = (i) => {
    const t = db.begin();
    t.put(`req/${i}`, 'x');
    const s = t.scan({ prefix: 'req/' });
    s.next(); // an open scan goes with it
    if (i % 2) throw new RangeError('validation failed');
    t.commit();
  };
  for (let i = 0; i < 3 * sochdb.MAX_TXNS_PER_HANDLE; i++) {
    assert.throws(() => handler(2 * i + 1), RangeError);
    if (i % 32 === 31) await settle();
  }
  await settle();
  assert.ok(db.stats().transactions_open < 32, `transactions_open ${db.stats().transactions_open}`);
  handler(0);
  assert.deepEqual(db.get('req/0'), B('x'));
  assert.equal(db.get('req/1'), null);
}));

test('a database dropped unclosed is closed when collected', () => withDb(async (db, dir) => {
  const v8 = require('v8');
  const vm = require('vm');
  v8.setFlagsFromString('--expose-gc');
  const gc = vm.runInNewContext('gc');
  const settle = async () => {
    for (let i = 0; i < 5; i++) { gc(); await new Promise((r) => setTimeout(r, 10)); }
  };
  const attached = db.stats().processes_attached;
  // Open per request and fail before close(): each handle kept one of the
  // region's 256 process slots for good (BusyError for every process after).
  for (let i = 0; i < 300; i++) {
    assert.throws(() => {
      const own = sochdb.open(dir);
      own.begin().put('pending', 'x');
      throw new RangeError('request failed');
    }, RangeError);
    if (i % 32 === 31) await settle();
  }
  await settle();
  assert.ok(db.stats().processes_attached < attached + 32, `processes_attached ${db.stats().processes_attached}`);
  assert.equal(db.get('pending'), null);
}));
