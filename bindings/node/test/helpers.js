'use strict';
// Shared by the test files (each runs in its own process under node --test).
//
// Environment, set before the library is loaded and inherited by forked workers:
//   SOCHDB_SHM_DIR: a private temporary directory for the region files, never
//     /dev/shm (see tests/testutil.h); removed when this process exits.
//   SOCHDB_DAEMON: the sochdbd next to the library under test, unless set.
//   SOCHDB_DAEMON_IDLE_MS: daemons started by the tests leave soon after them.
const fs = require('fs');
const os = require('os');
const path = require('path');
const { fork } = require('child_process');

if (!process.env.SOCHDB_SHM_DIR) {
  const shm = fs.mkdtempSync(path.join(os.tmpdir(), 'sochdb-node-shm-'));
  process.env.SOCHDB_SHM_DIR = shm;
  process.on('exit', () => fs.rmSync(shm, { recursive: true, force: true }));
}
if (!process.env.SOCHDB_DAEMON_IDLE_MS) process.env.SOCHDB_DAEMON_IDLE_MS = '1500';
if (!process.env.SOCHDB_DAEMON) {
  const libs = [process.env.SOCHDB_LIBRARY, ...require('..').candidatePaths()].filter(Boolean);
  for (const lib of libs) {
    // absolute: a relative $SOCHDB_LIBRARY (bindings/README.md runs npm test with
    // ../../build/libsochdb.so) made a relative $SOCHDB_DAEMON, which a symlink elsewhere
    // or a process in another directory resolves against the wrong directory
    const daemon = path.resolve(path.dirname(lib), 'sochdbd');
    if (lib.includes('/') && fs.existsSync(lib) && fs.existsSync(daemon)) {
      process.env.SOCHDB_DAEMON = daemon;
      break;
    }
  }
}

const sochdb = require('..');

/** A fresh database directory path (not created: sochdb.open makes it) and its cleanup. */
function tempDb() {
  const parent = fs.mkdtempSync(path.join(os.tmpdir(), 'sochdb-node-test-'));
  return {
    dir: path.join(parent, 'db'),
    cleanup: () => fs.rmSync(parent, { recursive: true, force: true }),
  };
}

/** Run fn(db, dir) on a fresh database, closed and removed afterwards. */
async function withDb(fn, opts) {
  const { dir, cleanup } = tempDb();
  const db = sochdb.open(dir, opts);
  try {
    return await fn(db, dir);
  } finally {
    db.close();
    cleanup(); // its daemon leaves when the directory goes
  }
}

/**
 * child_process.fork() n workers running test/worker.js `mode` with
 * { dir, index, ...params }, and resolve with what each sent back (in index
 * order). A worker that fails, exits without a result, or outlives timeoutMs
 * rejects the whole.
 */
function forkWorkers(n, mode, dir, params = {}, timeoutMs = 60000) {
  const script = path.join(__dirname, 'worker.js');
  return Promise.all(Array.from({ length: n }, (_, index) => new Promise((resolve, reject) => {
    const child = fork(script, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    let result;
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`worker ${index} (${mode}) still running after ${timeoutMs} ms`));
    }, timeoutMs);
    child.on('message', (m) => { result = m; });
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      if (result && result.error) reject(new Error(`worker ${index} (${mode}): ${result.error}`));
      else if (code !== 0 || !result) reject(new Error(`worker ${index} (${mode}) exited with ${code ?? signal}, no result`));
      else resolve(result.ok);
    });
    child.send({ mode, dir, index, ...params });
  })));
}

module.exports = { sochdb, tempDb, withDb, forkWorkers };
