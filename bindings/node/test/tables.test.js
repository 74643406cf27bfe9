'use strict';
// Columnar tables through the Node.js binding: schemas, rows of every type and
// NULL, projection and filters, snapshot isolation and conflicts, the refusals
// of bad input, a scan cut short by its transaction's end, and projection
// pushdown on flushed SSTables.
const test = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('crypto');
const { sochdb, withDb } = require('./helpers');

const PEOPLE = [
  { name: 'id', type: 'int64' },
  { name: 'name', type: 'string', nullable: true },
  { name: 'score', type: sochdb.types.DOUBLE, nullable: true },
  { name: 'photo', type: 'bytes', nullable: true },
];

function makePeople(db, rows) {
  return db.transaction((t) => {
    const people = t.createTable('people', PEOPLE);
    for (const r of rows) t.putRow(people, r);
    return people;
  });
}

test('create, put and get rows of every type and NULL', () => withDb((db) => {
  const min = -(2n ** 63n);
  const people = makePeople(db, [[1, 'Ann', 1.5, Buffer.from([0, 0xff])], { id: 2, name: 'Bob' }, [min, '', -0, Buffer.alloc(0)]]);
  assert.equal(people.name, 'people');
  assert.equal(people.id, 1);
  assert.deepEqual(people.columns.map((c) => [c.name, c.type, c.nullable]),
    [['id', 'int64', false], ['name', 'string', true], ['score', 'double', true], ['photo', 'bytes', true]]);
  db.transaction((t) => {
    assert.deepEqual(t.getRow(people, 1), [1, 'Ann', 1.5, Buffer.from([0, 0xff])]);
    assert.deepEqual(t.getRow(people, 2), [2, 'Bob', null, null]);
    assert.deepEqual(t.getRow(people, min), [min, '', -0, Buffer.alloc(0)]);
    assert.equal(t.getRow(people, 3), null);
    assert.deepEqual(t.getRow(people, 1, { columns: ['photo', 1] }), [Buffer.from([0, 0xff]), 'Ann']);
  }, { readonly: true });
}));

test('openTable checks the schema and names a missing table', () => withDb((db) => {
  makePeople(db, []);
  db.transaction((t) => {
    const p = t.openTable('people', PEOPLE);
    assert.deepEqual(p.columns.map((c) => c.name), ['id', 'name', 'score', 'photo']);
    p.close();
    assert.throws(() => t.openTable('people', [{ name: 'id', type: 'int64' }]), sochdb.InvalidError);
    assert.throws(() => t.openTable('nobody'), sochdb.NotFoundError);
  }, { readonly: true });
}));

test('scans in key order, with bounds, projection and filters', () => withDb((db) => {
  const rows = [];
  for (let i = 50; i > 0; i--) rows.push([i, `p${i}`, i % 7, i % 3 ? null : Buffer.alloc(i, 120)]);
  const people = makePeople(db, rows);
  const upTo = (n, f) => Array.from({ length: n }, (_, i) => i + 1).filter(f);
  db.transaction((t) => {
    assert.deepEqual(t.scanTable(people).toArray().map((r) => r[0]), upTo(50, () => true));
    assert.deepEqual(t.scanTable(people, { start: 10, end: 13, columns: ['name'] }).toArray(), [['p10'], ['p11'], ['p12']]);
    const s = t.scanTable(people, { columns: ['id'], where: ['score', '==', 3] });
    assert.deepEqual(s.toArray().map((r) => r[0]), upTo(50, (i) => i % 7 === 3));
    assert.deepEqual(s.columns, ['id']);
    assert.equal(s.stats.rows, upTo(50, (i) => i % 7 === 3).length);
    const between = t.scanTable(people, { columns: ['id'], where: ['name', 'between', 'p2', 'p3'] });
    assert.deepEqual(between.toArray().map((r) => r[0]), [2, 3, ...Array.from({ length: 10 }, (_, i) => 20 + i)]);
    // NULL passes no filter: only the photos of ids divisible by 3
    const photos = t.scanTable(people, { columns: [0], where: ['photo', '>=', Buffer.alloc(0)] });
    assert.deepEqual(photos.toArray().map((r) => r[0]), upTo(50, (i) => i % 3 === 0));
  }, { readonly: true });
  assert.ok(db.scanStats().scans >= 4);
}));

test('rows follow snapshot isolation and conflict', () => withDb((db) => {
  const people = makePeople(db, [[1, 'Ann', null, null]]);
  const reader = db.begin({ readonly: true });
  const a = db.begin();
  const b = db.begin();
  a.putRow(people, [1, 'Ann A', null, null]);
  b.putRow(people, [1, 'Ann B', null, null]);
  assert.deepEqual(a.getRow(people, 1, { columns: ['name'] }), ['Ann A']);
  a.commit();
  assert.throws(() => b.commit(), sochdb.ConflictError);
  assert.deepEqual(reader.getRow(people, 1, { columns: ['name'] }), ['Ann']);
  reader.abort();
  db.transaction((t) => {
    t.deleteRow(people, 1);
    t.deleteRow(people, 99); // absent: no error
  });
  assert.equal(db.transaction((t) => t.getRow(people, 1), { readonly: true }), null);
}));

test('an added column reads null in older rows', () => withDb((db) => {
  const people = makePeople(db, [[1, 'Ann', null, null]]);
  db.transaction((t) => {
    t.addColumn(people, { name: 'email', type: 'string' });
    t.putRow(people, [2, 'Bob', null, null]); // the handle keeps the schema it was opened with
    const wider = t.openTable('people');
    assert.equal(people.columns.length, 4);
    assert.deepEqual(wider.columns[4], { name: 'email', type: 'string', nullable: true });
    t.putRow(wider, { id: 3, email: 'cy@example.com' });
    assert.throws(() => t.addColumn(wider, { name: 'email', type: 'string' }), sochdb.InvalidError);
  });
  db.transaction((t) => {
    const wider = t.openTable('people');
    assert.deepEqual([1, 2].map((i) => t.getRow(wider, i, { columns: ['email'] })), [[null], [null]]);
    assert.deepEqual(t.getRow(wider, 3, { columns: ['name', 'email'] }), [null, 'cy@example.com']);
  }, { readonly: true });
}));

test('bad rows and arguments are refused before anything is written', () => withDb((db) => {
  const people = makePeople(db, []);
  db.transaction((t) => {
    assert.throws(() => t.putRow(people, ['1', 'Ann', null, null]), TypeError);
    assert.throws(() => t.putRow(people, [1.5, 'Ann', null, null]), TypeError);
    assert.throws(() => t.putRow(people, [2 ** 53, 'Ann', null, null]), RangeError); // not a safe integer
    assert.throws(() => t.putRow(people, [2n ** 63n, 'Ann', null, null]), RangeError);
    assert.throws(() => t.putRow(people, [1, 42, null, null]), TypeError); // a number as string
    assert.throws(() => t.putRow(people, [1, 'Ann']), RangeError);
    assert.throws(() => t.putRow(people, { id: 1, nick: 'A' }), RangeError);
    assert.throws(() => t.putRow(people, [null, 'Ann', null, null]), sochdb.InvalidError); // NULL primary key
    assert.throws(() => t.getRow(people, 1, { columns: ['nick'] }), RangeError);
    assert.throws(() => t.scanTable(people, { where: ['score', '~', 1] }), RangeError);
    assert.throws(() => t.scanTable(people, { where: ['score', 'between', 1] }), TypeError);
    assert.throws(() => t.createTable('bad', [{ name: 'id', type: 'float' }]), TypeError);
    assert.throws(() => t.createTable('bad', [{ name: 'id', type: 'double' }]), sochdb.InvalidError);
    assert.throws(() => t.createTable('people', PEOPLE), sochdb.InvalidError); // exists
  });
  db.transaction((t) => {
    assert.deepEqual(t.scanTable(people).toArray(), []);
    assert.throws(() => t.putRow(people, [1, 'Ann', null, null]), sochdb.InvalidError); // read-only
  }, { readonly: true });
}));

test('a table scan is cut short by its transaction\'s end', () => withDb((db) => {
  const people = makePeople(db, Array.from({ length: 10 }, (_, i) => [i, null, null, null]));
  const t = db.begin({ readonly: true });
  const s = t.scanTable(people, { columns: ['id'] });
  assert.deepEqual(s.next().value, [0]);
  t.commit();
  assert.throws(() => s.next(), /cut short/);
  assert.equal(s.stats.rows, 1);
}));

test('a table closed while a scan of it is open stays until the scan ends', () => withDb((db) => {
  // The C scan reads its table's schema at every step: close() freed the handle at
  // once, a table opened after it reused the memory, and the scan read rows under
  // another table's schema (CorruptError).
  const people = makePeople(db, Array.from({ length: 5 }, (_, i) => [i, `p${i}`, null, null]));
  db.transaction((t) => t.createTable('other', [{ name: 'k', type: 'bytes' }, { name: 'v', type: 'int64' }]).close());
  db.transaction((t) => {
    const s = t.scanTable(people, { columns: ['id', 'name'] });
    assert.deepEqual(s.next().value, [0, 'p0']);
    people.close();
    assert.equal(people.closed, true);
    assert.throws(() => t.getRow(people, 1), /closed/);
    const others = Array.from({ length: 8 }, () => t.openTable('other')); // would take the freed memory
    assert.deepEqual(s.toArray(), [1, 2, 3, 4].map((i) => [i, `p${i}`]));
    for (const o of others) o.close();
  }, { readonly: true });
}));

test('a table scan keeps its transaction from the garbage collector', async () => {
  require('v8').setFlagsFromString('--expose-gc');
  const gc = require('vm').runInNewContext('gc');
  await withDb(async (db) => {
    const people = makePeople(db, Array.from({ length: 3 }, (_, i) => [i, null, null, null]));
    const s = db.begin({ readonly: true }).scanTable(people, { columns: ['id'] }); // the scan alone holds it
    assert.deepEqual(s.next().value, [0]);
    for (let i = 0; i < 3; i++) {
      gc();
      await new Promise((resolve) => setImmediate(resolve)); // finalizers run between turns
    }
    assert.deepEqual(s.toArray(), [[1], [2]]);
  });
});

test('int64 beyond the safe integers reads back as a BigInt that writes back', () => withDb((db) => {
  const edge = [2n ** 53n, -(2n ** 53n), 2n ** 53n + 1n, 2n ** 63n - 1n];
  const people = makePeople(db, edge.map((v) => [v, null, null, null]));
  db.transaction((t) => {
    const ids = t.scanTable(people, { columns: ['id'] }).toArray().map((r) => r[0]);
    assert.deepEqual(ids, [...edge].sort((a, b) => (a < b ? -1 : 1)));
    for (const id of ids) t.putRow(people, [id, 'again', null, null]); // each taken back
    assert.deepEqual(t.getRow(people, 2n ** 53n, { columns: ['name'] }), ['again']);
  });
  assert.throws(() => db.transaction((t) => t.createTable('zz\0yy', [{ name: 'id', type: 'int64' }])), TypeError);
  assert.throws(() => db.transaction((t) => t.createTable('zz', [{ name: 'id\0q', type: 'int64' }])), TypeError);
}));

test('a table belongs to the database handle that opened it', () => withDb((db, dir) => {
  const people = makePeople(db, [[1, 'Ann', null, null]]);
  const other = sochdb.open(dir);
  try {
    other.transaction((t) => {
      assert.throws(() => t.getRow(people, 1), /another Database/);
      assert.deepEqual(t.getRow(t.openTable('people'), 1, { columns: ['name'] }), ['Ann']);
    }, { readonly: true });
  } finally {
    other.close();
  }
  people.close();
  assert.equal(people.closed, true);
  db.transaction((t) => assert.throws(() => t.getRow(people, 1), /closed/), { readonly: true });
}));

test('a scan of one column reads a fraction of a full scan from SSTables', () => withDb((db) => {
  const people = makePeople(db, []);
  for (let first = 0; first < 3000; first += 500) {
    db.transaction((t) => {
      for (let i = first; i < first + 500; i++) t.putRow(people, [i, `p${i}`, i, crypto.randomBytes(2048)]);
    }, { sync: false });
  }
  const deadline = Date.now() + 60000; // until most of the 6 MiB of photos are flushed
  const flushed = () => Number(db.stats().sst_bytes) >= 4 << 20;
  while (!flushed() && Date.now() < deadline) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 50);
  assert.ok(flushed(), 'not flushed within 60 s');
  db.transaction((t) => {
    const ids = t.scanTable(people, { columns: ['id'] });
    const all = t.scanTable(people);
    assert.equal(ids.toArray().length, 3000);
    assert.equal(all.toArray().length, 3000);
    assert.ok(Number(ids.stats.blocks_read) > 0, JSON.stringify(ids.stats));
    assert.ok(Number(ids.stats.bytes_read) < Number(all.stats.bytes_read) / 10,
      `${ids.stats.bytes_read} bytes against ${all.stats.bytes_read}`);
  }, { readonly: true });
}, { memtableBytes: 1 << 20 }));
