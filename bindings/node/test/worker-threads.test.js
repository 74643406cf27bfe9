'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const { Worker } = require('worker_threads');
const { withDb } = require('./helpers');

// A worker thread that opens the database and ends without close() (it
// returned, or threw): its handle must not keep one of the region's 256
// process slots, nor its open transaction's snapshot, for the life of the
// process (after 255 such workers every open() in every process was BUSY).
test('a worker thread that ends without close() releases its handle', () => withDb(async (db, dir) => {
  const before = db.stats();
  const code = `
    const { workerData, parentPort } = require('worker_threads');
    const sochdb = require(workerData.lib);
    const db = sochdb.open(workerData.dir);
    const t = db.begin();
    t.put('from-worker', 'pending');
    parentPort.postMessage(db.stats().processes_attached);
    if (workerData.mode === 'throw') throw new Error('the request failed');
  `;
  for (const mode of ['return', 'throw']) {
    const w = new Worker(code, { eval: true, workerData: { lib: require.resolve('..'), dir, mode } });
    let attached = null;
    w.on('message', (m) => { attached = m; });
    w.on('error', () => {});
    await new Promise((resolve) => w.once('exit', resolve));
    assert.equal(attached, before.processes_attached + 1, mode);
    const after = db.stats();
    assert.equal(after.processes_attached, before.processes_attached, `${mode}: the worker's process slot is released`);
    assert.equal(after.transactions_open, before.transactions_open, `${mode}: the worker's transaction is aborted`);
  }
  assert.equal(db.get('from-worker'), null);
}));
