'use strict';
// Several processes (child_process.fork) sharing one database; each worker
// opens its own handle (test/worker.js).
const test = require('node:test');
const assert = require('node:assert/strict');
const { sochdb, withDb, forkWorkers } = require('./helpers');

test('concurrent disjoint inserts from 4 processes are all present', () => withDb(async (db, dir) => {
  const workers = 4;
  const count = 100;
  assert.deepEqual(await forkWorkers(workers, 'insert', dir, { count }), Array(workers).fill(count));
  const pairs = db.transaction((t) => t.scan({ prefix: 'w' }).toArray(), { readonly: true });
  assert.equal(pairs.length, workers * count);
  const want = [];
  for (let i = 0; i < workers; i++) {
    for (let j = 0; j < count; j++) want.push(`w${String(i).padStart(2, '0')}/${String(j).padStart(4, '0')}`);
  }
  assert.deepEqual(pairs.map(([k]) => k.toString()), want.sort());
  for (const [k, v] of pairs) {
    const [i, j] = k.toString().slice(1).split('/').map(Number);
    assert.equal(v.toString(), `${i}:${j}`);
  }
}));

test('a counter incremented by 4 processes with retry-on-conflict ends exact', () => withDb(async (db, dir) => {
  const workers = 4;
  const count = 50;
  db.put('counter', '0');
  const conflicts = await forkWorkers(workers, 'counter', dir, { workers, count });
  assert.equal(Number(db.get('counter')), workers * count);
  assert.ok(db.stats().conflicts >= conflicts.reduce((a, b) => a + b, 0));
  console.log(`# counter: ${workers * count} increments, conflicts retried per worker: ${conflicts}`);
}));

test('a conflict with another process is observed, then retried', () => withDb(async (db, dir) => {
  db.put('hot', '0');
  const t = db.begin(); // snapshot: hot == 0
  t.put('hot', 'parent');
  await forkWorkers(1, 'commitHot', dir, { value: 'child' });
  assert.throws(() => t.commit(), sochdb.ConflictError);
  assert.deepEqual(db.get('hot'), Buffer.from('child'));
  // Retried with a fresh snapshot it succeeds.
  db.run((txn) => txn.put('hot', `parent:${txn.get('hot')}`));
  assert.deepEqual(db.get('hot'), Buffer.from('parent:child'));
}));

test('bank transfers between processes keep the total in every snapshot', () => withDb(async (db, dir) => {
  db.transaction((t) => { for (let a = 0; a < 8; a++) t.put(`acct/${a}`, '100'); });
  const writers = 3;
  const results = await forkWorkers(writers + 1, 'bank', dir, { writers, transfers: 100 });
  const reader = results[writers];
  assert.equal(reader.bad, 0);
  assert.ok(reader.snapshots >= 1);
  const balances = db.transaction((t) => Array.from({ length: 8 }, (_, a) => Number(t.get(`acct/${a}`))), { readonly: true });
  assert.equal(balances.reduce((a, b) => a + b, 0), 800);
  assert.ok(Math.min(...balances) >= 0);
  console.log(`# bank: ${JSON.stringify(results)}`);
}));
