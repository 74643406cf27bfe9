'use strict';
// A worker process started by helpers.forkWorkers (child_process.fork): a new
// process, so it opens its own handle on the shared database.
const { sochdb } = require('./helpers');

const ACCOUNTS = 8;

function barrier(db, name, parties) {
  const key = `barrier/${name}`;
  db.run((t) => t.put(key, String(Number(t.get(key) || 0) + 1)), { sync: false });
  while (Number(db.get(key)) < parties) { /* spin: every worker starts together */ }
}

const modes = {
  // Disjoint inserts: keys w<index>/<j>, one ASYNC transaction each, the last SYNC.
  insert(db, { index, count }) {
    for (let j = 0; j < count; j++) {
      db.transaction((t) => t.put(`w${String(index).padStart(2, '0')}/${String(j).padStart(4, '0')}`, `${index}:${j}`),
        { sync: j === count - 1 });
    }
    return count;
  },

  // Increment one counter, retried on conflict; returns the attempts that conflicted.
  counter(db, { workers, count }) {
    barrier(db, 'counter', workers);
    let attempts = 0;
    for (let j = 0; j < count; j++) {
      db.run((t) => {
        attempts++;
        t.put('counter', String(Number(t.get('counter')) + 1));
      }, { sync: false, retries: 100000 });
    }
    return attempts - count;
  },

  // Commit one key (the parent holds an older snapshot that wrote it too).
  commitHot(db, { value }) {
    db.put('hot', value);
    return true;
  },

  // Bank: workers move money between accounts; the last index is the reader.
  bank(db, { index, writers, transfers }) {
    barrier(db, 'bank', writers + 1);
    const balances = (t) => Array.from({ length: ACCOUNTS }, (_, a) => Number(t.get(`acct/${a}`)));
    const total = (t) => balances(t).reduce((x, y) => x + y, 0);
    if (index === writers) {
      let snapshots = 0;
      let bad = 0;
      for (;;) {
        const [sum, done] = db.transaction((t) => [total(t), t.get('done')], { readonly: true });
        snapshots++;
        if (sum !== ACCOUNTS * 100) bad++;
        if (done !== null && Number(done) === writers) return { snapshots, bad };
      }
    }
    let conflicts = 0;
    for (let j = 0; j < transfers; j++) {
      for (;;) {
        try {
          db.transaction((t) => {
            const a = Math.floor(Math.random() * ACCOUNTS);
            const b = (a + 1 + Math.floor(Math.random() * (ACCOUNTS - 1))) % ACCOUNTS;
            const amount = 1 + Math.floor(Math.random() * 20);
            const va = Number(t.get(`acct/${a}`));
            const vb = Number(t.get(`acct/${b}`));
            if (va < amount) return;
            t.put(`acct/${a}`, String(va - amount));
            t.put(`acct/${b}`, String(vb + amount));
          }, { sync: false });
          break;
        } catch (e) {
          if (!(e instanceof sochdb.ConflictError)) throw e;
          conflicts++;
        }
      }
    }
    db.run((t) => t.put('done', String(Number(t.get('done') || 0) + 1)));
    return { conflicts };
  },
};

process.once('message', (msg) => {
  let reply;
  try {
    const db = sochdb.open(msg.dir);
    try {
      reply = { ok: modes[msg.mode](db, msg) };
    } finally {
      db.close();
    }
  } catch (e) {
    reply = { error: (e && e.stack) || String(e) };
  }
  process.send(reply, () => process.exit(reply.error ? 1 : 0));
});
