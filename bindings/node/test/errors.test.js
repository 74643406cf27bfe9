'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('fs');
const path = require('path');
const { sochdb, withDb, tempDb } = require('./helpers');

test('each code maps to its class', () => {
  const { codes } = sochdb;
  const table = [
    [codes.NOTFOUND, sochdb.NotFoundError, 'SOCHDB_NOTFOUND'],
    [codes.CONFLICT, sochdb.ConflictError, 'SOCHDB_CONFLICT'],
    [codes.BUSY, sochdb.BusyError, 'SOCHDB_BUSY'],
    [codes.INVALID, sochdb.InvalidError, 'SOCHDB_INVALID'],
    [codes.CORRUPT, sochdb.CorruptError, 'SOCHDB_CORRUPT'],
    [codes.IO, sochdb.IoError, 'SOCHDB_IO'],
    [codes.NOMEM, sochdb.NoMemoryError, 'SOCHDB_NOMEM'],
    [codes.VERSION, sochdb.VersionError, 'SOCHDB_VERSION'],
    [codes.DAEMON, sochdb.DaemonError, 'SOCHDB_DAEMON'],
  ];
  assert.deepEqual([codes.OK, codes.NOTFOUND, codes.CONFLICT, codes.BUSY, codes.INVALID], [0, 1, 2, 3, 4]);
  for (const [code, Cls, name] of table) {
    assert.equal(sochdb.errorClass(code), Cls);
    const e = new Cls(code, 'reason', 'detail');
    assert.ok(e instanceof sochdb.SochdbError && e instanceof Error);
    assert.equal(e.code, code);
    assert.equal(e.codeName, name);
    assert.equal(e.name, Cls.name);
    assert.equal(e.message, `${name}: reason (detail)`);
  }
  assert.equal(sochdb.errorClass(999), sochdb.SochdbError);
});

test('opening a missing database without create is NOTFOUND', () => {
  const { dir, cleanup } = tempDb();
  try {
    assert.throws(() => sochdb.open(dir, { createIfMissing: false }),
      (e) => e instanceof sochdb.NotFoundError && e.code === sochdb.codes.NOTFOUND);
    assert.equal(fs.existsSync(dir), false);
  } finally {
    cleanup();
  }
});

test('opening a file is INVALID, with the detail of sochdb_last_error', () => {
  const { dir, cleanup } = tempDb();
  try {
    fs.mkdirSync(path.dirname(dir), { recursive: true });
    fs.writeFileSync(dir, 'not a directory');
    assert.throws(() => sochdb.open(dir), (e) => e instanceof sochdb.InvalidError && e.detail.length > 0);
  } finally {
    cleanup();
  }
});

test('key and value limits are INVALID', () => withDb((db) => {
  db.transaction((t) => {
    assert.throws(() => t.put(Buffer.alloc(sochdb.MAX_KEY + 1, 0x6b), 'v'),
      (e) => e instanceof sochdb.InvalidError && /4097/.test(e.detail));
    assert.throws(() => t.put('', 'v'), sochdb.InvalidError);
    assert.throws(() => t.get(''), sochdb.InvalidError);
    assert.throws(() => t.put('k', Buffer.alloc(sochdb.MAX_VALUE + 1)), (e) => e instanceof sochdb.InvalidError && /limit/.test(e.detail));
    t.put(Buffer.alloc(sochdb.MAX_KEY, 0x6b), 'max key is fine');
  });
  assert.deepEqual(db.get(Buffer.alloc(sochdb.MAX_KEY, 0x6b)), Buffer.from('max key is fine'));
}));

test('a write-write conflict is CONFLICT and applies nothing', () => withDb((db) => {
  db.put('acct', '100');
  const t1 = db.begin();
  const t2 = db.begin();
  t1.put('acct', '90');
  t2.put('acct', '80');
  t2.put('other', 'x');
  t1.commit();
  assert.throws(() => t2.commit(), (e) => e instanceof sochdb.ConflictError && e.code === sochdb.codes.CONFLICT);
  assert.ok(t2.closed);
  assert.deepEqual(db.get('acct'), Buffer.from('90'));
  assert.equal(db.get('other'), null);
  assert.ok(db.stats().conflicts >= 1);
}));

test('a daemon that cannot start is DAEMON', () => {
  const { dir, cleanup } = tempDb();
  try {
    assert.throws(() => sochdb.open(dir, { daemonPath: '/nonexistent/sochdbd' }),
      (e) => e instanceof sochdb.DaemonError && e.code === sochdb.codes.DAEMON && /nonexistent/.test(e.detail));
  } finally {
    cleanup();
  }
});

test('open() refuses a path that is not a string', () => {
  for (const bad of [undefined, null, 123, {}]) {
    assert.throws(() => sochdb.open(bad), TypeError);   // String(undefined) made ./undefined
  }
});

test('index.d.ts declares what open() accepts: string, Buffer or URL, also for daemonPath', () => {
  const dts = fs.readFileSync(path.join(__dirname, '..', 'index.d.ts'), 'utf8');
  const openDecl = dts.match(/export function open\(dir: ([^,]+),/);
  assert.ok(openDecl, 'open() is declared');
  const daemonDecl = dts.match(/daemonPath\?: ([^;]+);/);
  assert.ok(daemonDecl, 'daemonPath is declared');
  for (const decl of [openDecl[1], daemonDecl[1]]) {
    for (const type of ['string', 'Buffer', 'URL']) assert.ok(decl.split('|').map((s) => s.trim()).includes(type), `${decl}: ${type}`);
  }
  // and index.js does accept them
  const { dir, cleanup } = tempDb();
  try {
    sochdb.open(Buffer.from(dir)).close();
    sochdb.open(require('url').pathToFileURL(dir)).close();
  } finally {
    cleanup();
  }
});

test('a library without the sochdb functions reports so on every try', () => {
  const { spawnSync } = require('child_process');
  const script = `
    const sochdb = require(${JSON.stringify(path.join(__dirname, '..'))});
    for (let i = 0; i < 2; i++) {
      try { sochdb.open('/nonexistent/never-created'); } catch (e) { console.log(e.message.split('\\n')[0]); }
    }`;
  // libc: loads, but has no sochdb_* symbols
  const r = spawnSync(process.execPath, ['-e', script], { env: { ...process.env, SOCHDB_LIBRARY: 'libc.so.6' }, encoding: 'utf8' });
  const lines = r.stdout.trim().split('\n');
  assert.equal(lines.length, 2, r.stdout + r.stderr);
  for (const line of lines) assert.match(line, /sochdb_strerror/);
});
