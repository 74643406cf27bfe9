/*
** sochdb.h — the public C API of sochdb, a transactional key-value engine that
** several processes on one machine read and write at the same time.
**
** Every process that opens a database directory attaches to one shared memory
** region holding the memtable and the MVCC version chains; transactions are
** snapshot-isolated across all processes. This header is the whole public
** surface: handles are opaque, every function returns an int error code
** (SOCHDB_OK == 0) unless documented otherwise, and sochdb_strerror() turns a
** code into a message.
**
** Threads: a sochdb handle may be shared by all threads of its process. A
** transaction, and the iterators opened in it, belong to one thread at a time.
**
** fork(): a handle does not survive fork(). In the child every call on an
** inherited handle or transaction returns SOCHDB_INVALID; the child opens its
** own handle (LMDB has the same rule). The parent is unaffected. The child
** unmaps the shared region: keys and values that sochdb_get or
** sochdb_iter_next returned before the fork point into it, and reading them
** in the child faults (SIGSEGV). Copy what a child needs before forking.
**
** File descriptors: a handle keeps the shared region's file open, and an
** open-file-description lock on it is how other processes know this one is
** alive. Never close that descriptor behind the library's back (close,
** dup2 over it, closefrom or close_range while the handle is open): the lock
** goes with it, another process then takes this one for dead and rolls back
** its transactions, and a commit racing that roll-back is not protected.
** Commits that find their slot taken fail with SOCHDB_INVALID.
**
** Limits: keys are 1..SOCHDB_MAX_KEY bytes, values 0..SOCHDB_MAX_VALUE bytes.
** Anything outside is refused with SOCHDB_INVALID, never truncated. Keys that
** start with the two bytes 0xFF 0xFF are reserved for the engine (the rows
** and schemas of columnar tables, below): sochdb_put, sochdb_delete and
** sochdb_get refuse them with SOCHDB_INVALID, and iterators never return
** them (a range reaching into them stops before them).
**
** Columnar tables (sochdb_table_*, sochdb_row_*, sochdb_scan_*; see
** docs/columnar.md) store rows of a fixed schema in the same key space, so
** they share transactions, snapshots, conflicts, the WAL and durability with
** the key-value calls.
*/
#ifndef SOCHDB_H
#define SOCHDB_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SOCHDB_VERSION_MAJOR 0
#define SOCHDB_VERSION_MINOR 1
#define SOCHDB_VERSION_PATCH 0

#define SOCHDB_MAX_KEY   4096u
#define SOCHDB_MAX_VALUE (16u * 1024u * 1024u)

/* Error codes. 0 is success; every other value has a message from sochdb_strerror(). */
enum {
  SOCHDB_OK = 0,
  SOCHDB_NOTFOUND,   /* key absent (get), iterator exhausted (iter_next) */
  SOCHDB_CONFLICT,   /* snapshot-isolation write-write conflict: nothing was applied, retry the transaction */
  SOCHDB_BUSY,       /* resource temporarily exhausted (region full, daemon behind) past the configured timeout */
  SOCHDB_INVALID,    /* bad argument: NULL, key/value too large, wrong flags, read-only txn written */
  SOCHDB_CORRUPT,    /* checksum or format failure in a file or in the shared region */
  SOCHDB_IO,         /* an I/O system call failed; errno is preserved */
  SOCHDB_NOMEM,
  SOCHDB_VERSION,    /* directory or region written by an incompatible format version */
  SOCHDB_DAEMON,     /* the helper daemon could not be started or reached */
};

/*
** sochdb_strerror — a static, human-readable message for an error code.
** Never returns NULL; an unknown code gives "unknown sochdb error".
*/
const char *sochdb_strerror(int err);

/*
** sochdb_last_error — details of the last error returned to this thread
** (for example "key is 5000 bytes; keys are 1 to 4096 bytes"), or "" if
** none. Like errno, it is meaningful right after a call that failed: a call
** that succeeds leaves it unchanged, and so does SOCHDB_NOTFOUND (an absent
** key, the end of an iterator or scan), which is an answer, not an error.
** The string is owned by the library and valid until this thread's next
** sochdb call. Optional: sochdb_strerror() alone is always enough.
*/
const char *sochdb_last_error(void);

typedef struct sochdb      sochdb;       /* one process's handle on one database directory */
typedef struct sochdb_txn  sochdb_txn;   /* one transaction; used by one thread at a time   */
typedef struct sochdb_iter sochdb_iter;  /* a range cursor inside a transaction's snapshot  */

typedef struct sochdb_options {          /* zero-initialised = defaults */
  size_t region_bytes;      /* size of the shared region, fixed at creation (default: 1 GiB, sparse) */
  size_t memtable_bytes;    /* one memtable arena (default 64 MiB; 1 MiB to 4 GiB, a multiple of 4096;
                               the region holds up to 64 of them, 32 GiB of them at most). A value
                               may take at most about half of one */
  unsigned busy_timeout_ms; /* how long a writer may wait for room before SOCHDB_BUSY (default 10000) */
  const char *daemon_path;  /* sochdbd to spawn; NULL = $SOCHDB_DAEMON, else the one next to the
                               library, else the one in its installation's bin/,
                               else $PATH */
  int create_if_missing;    /* 0 (zero-initialised) = the default, 1: create a missing database;
                               negative (-1): it must exist (SOCHDB_NOTFOUND). Note that 0 creates */
  unsigned file_mode;       /* permission bits of the database's files (region, data, log, locks; its
                               directories add x where r), applied exactly, not reduced by the umask;
                               0 = 0600. Set by the creator: later openers' file_mode is ignored */
  size_t cache_bytes;       /* the block cache in the region, shared by every process, fixed at
                               creation (default: region_bytes / 16, at most 64 MiB); blocks kept
                               there are decompressed SSTable blocks */
} sochdb_options;

/*
** sochdb_open — attach this process to the database in directory dir.
**
** Creates the directory and the shared region when they are missing (unless
** create_if_missing is negative). Several processes may open the same
** directory at the same instant; exactly one creates the region, the others
** wait for it to be complete. opts may be NULL (all defaults); region_bytes and
** memtable_bytes only matter to the process that creates the region. On
** success *out owns a handle the caller releases with sochdb_close(). A
** closed descriptor 0, 1 or 2 is first taken by /dev/null, unusable as it
** was (stdin not readable, stdout and stderr not writable), so that no
** database file gets that number: writes to stdout would land in the region.
**
** Errors: SOCHDB_INVALID (NULL dir or out, options out of range: sizes not
**   multiples of 4096, region_bytes above 1 TiB or too small for its tables,
**   cache_bytes above half the region; dir is not a directory),
**   SOCHDB_NOTFOUND (missing and create_if_missing < 0),
**   SOCHDB_IO (a system call failed; errno kept), SOCHDB_NOMEM,
**   SOCHDB_VERSION (a file of the directory was written by an incompatible
**   format version, or the region was while a process still uses it; once
**   none does, an open rebuilds the region from the directory),
**   SOCHDB_CORRUPT (the region's header is damaged while a process still
**   uses it (rebuilt likewise once none does), or a file a rebuild of
**   the region reads: sochdb.id, CURRENT and the MANIFEST, a WAL group or a
**   missing segment; sochdb_last_error() names it),
**   SOCHDB_BUSY (every process slot of the region is held by a live process,
**   a slot's shared memory could not be reserved, or the sochdbd of a
**   previous region of dir did not exit within 10 s),
**   SOCHDB_DAEMON (no sochdbd serves the directory and none could be
**   started: the binary is missing, it exited, or another process had been
**   starting one for 5 s; sochdb_last_error() and DIR/sochdbd.log say why).
*/
int  sochdb_open(const char *dir, const sochdb_options *opts, sochdb **out);

/*
** sochdb_close — detach from the database and free db. Transactions of this
** handle that are still open are aborted (their memory is freed; later use of
** them is undefined: end them first). Their iterators and scans return
** SOCHDB_INVALID from then on and must still be closed. Table handles
** (sochdb_table_close) may be closed after it.
** NULL is a no-op. Must not race with other calls on db.
*/
void sochdb_close(sochdb *db);

#define SOCHDB_TXN_READONLY 0x1u

/*
** sochdb_txn_begin — start a transaction whose snapshot is the last commit
** published when it begins. Read-only transactions (SOCHDB_TXN_READONLY)
** never block and are never blocked; they refuse writes. A read-write
** transaction's begin waits out the write stall (see sochdb_commit) before
** it takes its snapshot, up to busy_timeout_ms.
**
** On success *out is owned by the caller until sochdb_commit() or
** sochdb_abort() frees it. t must not be used after that. (The object may be
** kept for this handle's next begin, which then reuses it: until then, a
** call on t returns SOCHDB_INVALID and a second abort does nothing. But the
** handle keeps one such object: when another of its transactions ends, t's
** is freed, and a call on t reads freed memory. Do not rely on the check.)
**
** Errors: SOCHDB_INVALID (NULL argument, unknown flag bits, handle inherited
**   across fork), SOCHDB_BUSY (this handle has too many open transactions:
**   SOCHDB_MAX_TXNS_PER_HANDLE; or, read-write only, the write stall was not
**   over within busy_timeout_ms), SOCHDB_NOMEM.
*/
#define SOCHDB_MAX_TXNS_PER_HANDLE 128u
int  sochdb_txn_begin(sochdb *db, unsigned flags, sochdb_txn **out);

/*
** sochdb_put / sochdb_delete — buffer a write in the transaction. Nothing is
** visible to other transactions until commit. The key and value are copied.
**
** Errors: SOCHDB_INVALID (NULL t, NULL key, key length 0 or above
**   SOCHDB_MAX_KEY, value above SOCHDB_MAX_VALUE or NULL with vlen > 0,
**   a version larger than half of this database's memtable_bytes (one
**   memtable must hold it whole), read-only or ended transaction, a write
**   that would take the transaction past 65535 keys or 1 GiB of keys and
**   values: refused, the transaction stays usable), SOCHDB_NOMEM.
*/
int  sochdb_put(sochdb_txn *t, const void *key, size_t klen, const void *val, size_t vlen);
int  sochdb_delete(sochdb_txn *t, const void *key, size_t klen);

/*
** sochdb_get — read key in the transaction's snapshot, seeing its own writes.
** Zero-copy where possible: *val points into the shared region, a mapped
** SSTable, or the transaction's buffer (a value of a compressed block is
** copied there) and stays valid until the transaction ends (also
** when the transaction writes the same key again: its buffer only grows).
** The bytes must not be modified.
**
** Errors: SOCHDB_NOTFOUND (absent or deleted), SOCHDB_INVALID (NULL argument,
**   bad key length), SOCHDB_CORRUPT (a damaged structure was detected),
**   SOCHDB_IO (an SSTable could not be opened or mapped, e.g. EMFILE; the
**   message names the file), SOCHDB_NOMEM (mapping the SSTables at the
**   transaction's first read, or copying a value out of a compressed block;
**   the transaction stays usable).
*/
int  sochdb_get(sochdb_txn *t, const void *key, size_t klen, const void **val, size_t *vlen);

#define SOCHDB_SYNC  0x0u   /* default: returns once the commit is durable (fdatasync'd by the group commit) */
#define SOCHDB_ASYNC 0x1u   /* returns once the commit is in the WAL ring; durable within a bounded delay */

/*
** sochdb_commit — make the transaction's writes visible atomically, or none
** of them. Always frees t, whatever it returns. A read-only or empty
** transaction commits trivially.
**
** Snapshot isolation, first committer wins: if another transaction committed
** a write to one of our keys after our snapshot (or is committing one right
** now), nothing is applied and SOCHDB_CONFLICT is returned; retry the whole
** transaction. A read-write transaction that stayed open while versions
** newer than its snapshot were flushed out of memory has each of its keys
** looked up in the SSTables too (one lookup a key, bloom filter first).
** When SOCHDB_OK is returned the commit is visible to every
** transaction that begins afterwards, in any process.
**
** SOCHDB_SYNC returns once the commit is durable (written and fdatasync'd by
** sochdbd's group commit); SOCHDB_ASYNC once it is visible (durable within a
** few milliseconds while the log keeps up; one made while the daemon stops,
** after its last write of the log, waits until it has left, at most 2 s, and
** starts its successor, which writes it). A commit is visible to others
** slightly before it is durable; the log keeps commit order, so a crash loses
** at most a suffix of the commits that were not yet durable: never a SYNC
** commit that returned SOCHDB_OK, but possibly ASYNC ones that did, within
** the last few milliseconds (a load faster than the disk: at most 229,376
** commits, 32,768 in a region under 64 MiB; a commit waits while the log
** is that far behind).
**
** Write stall: a read-write transaction's begin waits while more than 128
** MiB (and at least two) of full memtables wait for sochdbd to flush them,
** and its commit, before it installs anything, while one more than that
** does. That bounds how far ASYNC durability can lag a load faster than the
** daemon, and what a replay after a lost region must read. sochdb_stats
** counts such waits (and a commit's for a free memtable or for the WAL
** writer): write_stalls, write_stall_us.
**
** Errors: SOCHDB_CONFLICT, SOCHDB_INVALID (unknown flag bits, NULL t,
**   inherited across fork, more than 65535 keys or 1 GiB written in one
**   transaction: nothing is applied), SOCHDB_BUSY (no memtable room, the WAL
**   writer too far behind, or the write stall not over, within
**   busy_timeout_ms: nothing is applied), SOCHDB_NOMEM,
**   SOCHDB_CORRUPT or SOCHDB_IO (only a transaction whose keys were looked
**   up in the SSTables, as sochdb_get reports them: a file that may hold one
**   of its keys is damaged or cannot be mapped; nothing is applied),
**   SOCHDB_DAEMON (SOCHDB_SYNC only: the commit IS applied and visible, but
**   no daemon confirmed it durable within max(busy_timeout_ms, 5 s), even
**   after restarting one).
*/
int  sochdb_commit(sochdb_txn *t, unsigned flags);

/* sochdb_abort — discard the transaction's writes and free t. NULL is a no-op. */
void sochdb_abort(sochdb_txn *t);

/*
** sochdb_iter_open — a cursor over keys in [start, end) in byte order, in the
** transaction's snapshot plus its own writes (as they were when the iterator
** was opened). start NULL/0 = from the first key; end NULL/0 = to the last
** key. The iterator must be closed before its transaction ends. Reserved
** keys (0xFF 0xFF ...) are never returned: the range ends before them.
**
** Errors: SOCHDB_INVALID (NULL t or out, ended transaction, bound longer
**   than SOCHDB_MAX_KEY), SOCHDB_CORRUPT or SOCHDB_IO (an SSTable is damaged,
**   missing or could not be opened; the message names the file), SOCHDB_NOMEM.
*/
int  sochdb_iter_open(sochdb_txn *t, const void *start, size_t slen, const void *end, size_t elen,
                      sochdb_iter **out);

/*
** sochdb_iter_next — the next key and value. *key and *val stay valid until
** the transaction ends. Returns SOCHDB_NOTFOUND when the range is exhausted.
** That promise costs memory: a key or value read from a compressed SSTable
** block, and a key stored sharing a prefix with the one before it, is
** handed out as a copy that the transaction keeps until it ends, also once
** the iterator is closed; so a scan holds about as much memory as the keys
** and values it returned. Over a range larger than memory, open it with
** sochdb_iter_open_transient (below), or end the transaction now and then
** (each new one is a new snapshot).
**
** Errors: SOCHDB_NOTFOUND (exhausted), SOCHDB_INVALID (NULL argument; the
**   transaction ended: close iterators first), SOCHDB_CORRUPT or SOCHDB_IO
**   (an SSTable is damaged or could not be read; the message names the
**   file: once an iterator reports one, every later next reports it
**   again, for the keys behind the damage cannot be listed), SOCHDB_NOMEM (copying a
**   value out of a compressed block).
*/
int  sochdb_iter_next(sochdb_iter *it, const void **key, size_t *klen, const void **val, size_t *vlen);

/*
** sochdb_iter_open_transient — sochdb_iter_open, but each key and value that
** sochdb_iter_next hands out stays valid only until the next
** sochdb_iter_next or sochdb_iter_close on this iterator. Nothing is kept
** for the transaction, so a scan of any length holds one block's worth of
** memory: for whole-database scans, dumps and exports, and for callers
** that copy each pair at once (the Python and Node.js bindings do).
**
** Errors: those of sochdb_iter_open; sochdb_iter_next's are unchanged.
*/
int  sochdb_iter_open_transient(sochdb_txn *t, const void *start, size_t slen, const void *end, size_t elen,
                                sochdb_iter **out);

/* sochdb_iter_close — free it. NULL is a no-op. */
void sochdb_iter_close(sochdb_iter *it);

/*
** sochdb_stats — a consistent-enough picture of the shared region (counters
** are read without stopping anyone). The
** counters of what processes did (commits through keys_written, user_bytes,
** cache_hits and cache_misses, write_stalls and write_stall_us) count every
** process since the region was made, those gone or killed included, and one
** reading is never below an earlier one, whoever comes or goes meanwhile.
*/
typedef struct sochdb_stats {
  uint64_t region_bytes;        /* size of the shared region */
  uint64_t memtable_bytes;      /* size of one memtable arena */
  uint32_t memtables_total;     /* arenas in the region */
  uint32_t memtables_in_use;    /* arenas holding a live memtable */
  uint64_t memtable_used_bytes; /* bytes allocated in live memtables */
  uint32_t processes_attached;  /* process slots held by live handles */
  uint32_t transactions_open;   /* transactions holding a snapshot right now */
  uint64_t last_commit_seq;     /* the newest published commit sequence */
  uint64_t commits;             /* transactions committed with at least one write */
  uint64_t conflicts;           /* commits refused with SOCHDB_CONFLICT */
  uint64_t aborts;              /* transactions aborted (explicitly or by close) */
  uint64_t keys_written;        /* versions installed by commits */
  uint64_t processes_reaped;    /* slots of dead processes reclaimed */
  uint64_t dead_txns_rolled_back; /* unfinished commits of dead processes rolled back */
  uint64_t oldest_snapshot;     /* the oldest snapshot still held (== last_commit_seq if none) */
  uint64_t durable_seq;         /* every commit up to this sequence is on disk (fdatasync'd) */
  uint64_t wal_groups;          /* group commits written by the daemon (one fdatasync each) */
  uint64_t wal_records;         /* commits written to the WAL */
  uint64_t wal_bytes;           /* bytes of commit records written to the WAL */
  uint32_t daemon_running;      /* 1 if a sochdbd holds the database's LOCK */
  uint32_t wal_segments;        /* WAL segment files in DIR/wal */
  uint64_t user_bytes;          /* key + value bytes committed (the base of write amplification) */
  uint64_t flushes;             /* memtables written as SSTables */
  uint64_t flush_bytes;         /* SSTable bytes written by flushes */
  uint64_t compactions;         /* compactions finished */
  uint64_t compact_bytes_read;  /* SSTable bytes read by compactions */
  uint64_t compact_bytes_written; /* SSTable bytes written by compactions */
  uint64_t compaction_debt_bytes; /* bytes the levels are over their size targets */
  uint64_t wal_segments_removed; /* WAL segments removed once flushed (their files deleted, or kept
                                 ** for later segments to reuse: DIR/wal/<lsn>.free, not counted in
                                 ** wal_segments) */
  uint32_t sst_files;           /* live SSTables, all levels */
  uint32_t l0_files;            /* ... of which in level 0 (flushed, not yet compacted) */
  uint64_t sst_bytes;           /* their total size: space amplification = sst_bytes / live data */
  uint64_t cache_bytes;         /* size of the shared block cache */
  uint64_t cache_hits;          /* block-cache lookups that found the block */
  uint64_t cache_misses;
  uint64_t cache_inserts;
  uint64_t cache_evictions;
  uint64_t write_stalls;        /* waits of writers for sochdbd, every process's: a begin or commit held
                                ** by the write stall (memtables waiting for their flush: sochdb_commit),
                                ** or a commit waiting for the WAL writer a full record ring behind,
                                ** each wait once however long; a commit waiting for a free memtable,
                                ** once however many times it does (counted as they happen) */
  uint64_t write_stall_us;      /* microseconds writers spent in those waits, all together */
  uint64_t compact_throttle_us; /* microseconds compactions slept to keep to sochdbd's read rate limit
                                ** (--compaction-rate-mb; none while level 0 holds --l0-unthrottle files) */
  uint64_t l0_stops;            /* flushes held because level 0 held sochdbd's --l0-stop files, each
                                ** once however long: writers stall behind the memtables that wait */
  uint64_t l0_stop_us;          /* microseconds those flushes were held, all together */
} sochdb_stats;

/* Errors: SOCHDB_INVALID (NULL argument or handle inherited across fork). */
int  sochdb_stats_get(sochdb *db, sochdb_stats *out);

/* ======================================================================
** Columnar tables
**
** A table holds rows of a fixed schema: named, typed columns, the first of
** which is the primary key (int64, bytes or string; never NULL). Rows live
** in the database's key space under reserved keys, one key per row, so every
** row operation takes a transaction and behaves exactly like a key-value
** write or read in it: snapshot isolation, first-committer-wins conflicts
** (two transactions writing the same primary key conflict), all-or-nothing
** commits through the same WAL, the same durability. In SSTables the rows of
** a block are stored column by column, each column compressed and
** checksummed on its own, with each numeric column's min/max in the block
** index: a scan reads and decompresses only the columns it asks for (and
** its filter's), and skips the blocks whose min/max exclude its filter.
**
** Limits: SOCHDB_MAX_COLUMNS columns; table and column names 1..
** SOCHDB_MAX_NAME bytes (no NUL); a primary key of bytes or string at most
** SOCHDB_MAX_PK bytes; an encoded row at most SOCHDB_MAX_VALUE bytes.
** Threads: a sochdb_table handle is read-only once open, and may be used by
** every thread of its process, in any transaction of its database; a scan
** belongs to its transaction's thread.
** ====================================================================== */

#define SOCHDB_MAX_COLUMNS 64u
#define SOCHDB_MAX_NAME    64u
#define SOCHDB_MAX_PK      (SOCHDB_MAX_KEY - 7u)

/* Column types. A string is bytes that tools print as text (not checked). */
enum { SOCHDB_INT64 = 1, SOCHDB_DOUBLE = 2, SOCHDB_BYTES = 3, SOCHDB_STRING = 4 };
#define SOCHDB_NULLABLE 0x1u      /* sochdb_column.flags: the column may hold NULL */

typedef struct sochdb_column {
  const char *name;      /* NUL-terminated, 1..SOCHDB_MAX_NAME bytes, unique in the table */
  unsigned    type;      /* SOCHDB_INT64, SOCHDB_DOUBLE, SOCHDB_BYTES or SOCHDB_STRING */
  unsigned    flags;     /* 0 or SOCHDB_NULLABLE */
} sochdb_column;

/* One column's value. Which field holds it is given by the column's type:
** i64 (SOCHDB_INT64), f64 (SOCHDB_DOUBLE), bytes + len (SOCHDB_BYTES and
** SOCHDB_STRING; not NUL-terminated; bytes may be NULL when len is 0). */
typedef struct sochdb_value {
  int         is_null;
  int64_t     i64;
  double      f64;
  const void *bytes;
  size_t      len;
} sochdb_value;

typedef struct sochdb_table sochdb_table;   /* an open table: its id and schema */
typedef struct sochdb_scan  sochdb_scan;    /* a projected range scan inside a transaction */

/*
** sochdb_table_create — create table `name` with columns cols[0..ncols) in
** transaction t (the table exists for others once t commits). cols[0] is the
** primary key: SOCHDB_INT64, SOCHDB_BYTES or SOCHDB_STRING, not nullable.
** The names are copied. Two transactions creating tables at once conflict
** (SOCHDB_CONFLICT at commit: retry).
**
** Errors: SOCHDB_INVALID (NULL argument, read-only t, bad or duplicate name,
**   unknown type or flag, ncols 0 or above SOCHDB_MAX_COLUMNS, bad primary
**   key column, or a table of that name exists in t's snapshot),
**   SOCHDB_NOMEM, SOCHDB_CORRUPT, SOCHDB_IO (an SSTable could not be read).
*/
int  sochdb_table_create(sochdb_txn *t, const char *name, const sochdb_column *cols, size_t ncols);

/*
** sochdb_table_open — open table `name` as t's snapshot holds it. With cols
** NULL, whatever its schema is; otherwise cols[0..ncols) must be exactly its
** schema (names, types, nullability, order), or SOCHDB_INVALID with a
** message naming the first difference. On success *out is a handle the
** caller frees with sochdb_table_close(); it keeps the schema it was opened
** with (after sochdb_table_add_column commits, open the table again to use
** the new column) and may be used in any later transaction of the same
** database handle (another handle's transactions refuse it with
** SOCHDB_INVALID: open the table there). A transaction checks, at its first
** use of a handle, that the handle's columns are still the table's in its
** snapshot: a handle opened in a transaction whose create or add_column was
** then rolled back, or used in a snapshot older than the handle's schema,
** is refused with SOCHDB_INVALID ("open it again").
**
** Errors: SOCHDB_NOTFOUND (no such table), SOCHDB_INVALID (NULL argument,
**   schema mismatch), SOCHDB_CORRUPT (a damaged schema), SOCHDB_IO (an
**   SSTable could not be read), SOCHDB_NOMEM.
*/
int  sochdb_table_open(sochdb_txn *t, const char *name, const sochdb_column *cols, size_t ncols,
                       sochdb_table **out);

/* sochdb_table_close — free the handle (not the table). NULL is a no-op. */
void sochdb_table_close(sochdb_table *tb);

/*
** sochdb_table_schema — the handle's columns: *cols points to *ncols
** descriptions owned by tb (valid until sochdb_table_close), and *id (may be
** NULL) gets the table's id. Errors: SOCHDB_INVALID (NULL argument).
*/
int  sochdb_table_schema(const sochdb_table *tb, const sochdb_column **cols, size_t *ncols, uint32_t *id);

/*
** sochdb_table_add_column — append a column to tb's table in t. It must be
** SOCHDB_NULLABLE: rows written before read it as NULL. tb itself keeps its
** schema; open the table again (in t, or after t commits) to see the column.
** Fails with SOCHDB_CONFLICT if the schema changed since tb was opened (open
** it again), and at commit if another transaction changed it meanwhile.
**
** Errors: SOCHDB_INVALID (NULL argument, read-only t, not nullable, bad or
**   duplicate name, SOCHDB_MAX_COLUMNS reached), SOCHDB_CONFLICT,
**   SOCHDB_NOTFOUND (the table is gone), SOCHDB_CORRUPT or SOCHDB_IO (an
**   SSTable could not be read), SOCHDB_NOMEM.
*/
int  sochdb_table_add_column(sochdb_txn *t, sochdb_table *tb, const sochdb_column *col);

/*
** sochdb_row_put — insert or replace the row whose primary key is values[0];
** values[0..n) gives every column of tb's schema, in order (is_null for
** NULL, allowed in nullable columns only). Buffered in t like sochdb_put;
** the bytes are copied.
**
** Errors: SOCHDB_INVALID (NULL argument, read-only or ended t, tb opened
**   on another handle or stale (see sochdb_table_open), NULL in a column that is not nullable, primary key
**   too long, row above SOCHDB_MAX_VALUE), SOCHDB_CORRUPT or SOCHDB_IO (checking tb
**   against t's snapshot read a damaged or unreadable SSTable), SOCHDB_NOMEM.
*/
int  sochdb_row_put(sochdb_txn *t, sochdb_table *tb, const sochdb_value *values);

/* sochdb_row_delete — delete the row with primary key *pk (absent: no-op).
** Errors: as sochdb_row_put. */
int  sochdb_row_delete(sochdb_txn *t, sochdb_table *tb, const sochdb_value *pk);

/*
** sochdb_row_get — read the row with primary key *pk in t's snapshot (seeing
** t's own writes): out[i] = the value of column cols[i], for i < ncols
** (cols NULL: every column of the schema, in order; out then has room for
** all of them). Columns the row predates read as NULL. Bytes point into
** memory that stays valid until t ends.
**
** Errors: SOCHDB_NOTFOUND (no such row), SOCHDB_INVALID (NULL argument,
**   NULL primary key, column index out of range), SOCHDB_CORRUPT,
**   SOCHDB_IO (an SSTable could not be opened or mapped), SOCHDB_NOMEM.
*/
int  sochdb_row_get(sochdb_txn *t, sochdb_table *tb, const sochdb_value *pk, const unsigned *cols, size_t ncols,
                    sochdb_value *out);

/* A filter on one column, evaluated inside the storage layer. NULL never
** passes, nor does a double NaN. value is the bound (op's only operand);
** SOCHDB_BETWEEN passes value <= column <= value2. Bytes and strings compare
** by memcmp, then the shorter first. */
enum { SOCHDB_EQ = 1, SOCHDB_LT, SOCHDB_LE, SOCHDB_GT, SOCHDB_GE, SOCHDB_BETWEEN };
typedef struct sochdb_filter {
  unsigned     column;   /* index in the schema */
  unsigned     op;       /* SOCHDB_EQ .. SOCHDB_BETWEEN */
  sochdb_value value;
  sochdb_value value2;   /* SOCHDB_BETWEEN's upper bound */
} sochdb_filter;

/* What a scan cost (sochdb_scan_close), or the sum over every scan closed in
** any process since the shared region was created (sochdb_scan_stats_get). */
typedef struct sochdb_scan_stats {
  uint64_t scans;              /* scans closed (1 for one scan) */
  uint64_t rows;               /* rows returned */
  uint64_t blocks_read;        /* SSTable data blocks read (columnar: their keys, at least) */
  uint64_t blocks_skipped;     /* columnar blocks whose column segments the filter's min/max skipped */
  uint64_t blocks_direct;      /* columnar blocks whose rows came straight from their columns: every
                                  row the only version of its key and visible, no other source
                                  holding keys among them (the fast path of a compacted table) */
  uint64_t bytes_read;         /* stored (compressed) bytes of the blocks and column segments read */
  uint64_t bytes_decompressed; /* bytes LZ4 produced for them (0 for what the block cache held) */
} sochdb_scan_stats;

/*
** sochdb_table_scan — rows with start_pk <= primary key < end_pk (NULL: no
** bound), in primary-key order, in t's snapshot plus its own writes (as they
** were at this call), that pass *filter (NULL: all rows); each yields the
** columns cols[0..ncols) (cols NULL: all, in schema order). Only those
** columns and the filter's are read from SSTables, and the blocks whose
** min/max exclude the filter are skipped. The scan must be closed before t
** ends, and tb must stay open until then; *filter is copied.
**
** Errors: SOCHDB_INVALID (NULL t, tb or out, a column or the filter's column
**   out of range, cols given with ncols 0 or above SOCHDB_MAX_COLUMNS,
**   unknown op, a NULL filter bound, a bytes or string filter bound above
**   SOCHDB_MAX_VALUE, a primary-key bound that is NULL or too long),
**   SOCHDB_CORRUPT or SOCHDB_IO (an SSTable is damaged
**   or could not be opened), SOCHDB_NOMEM.
*/
int  sochdb_table_scan(sochdb_txn *t, sochdb_table *tb, const sochdb_value *start_pk, const sochdb_value *end_pk,
                       const unsigned *cols, size_t ncols, const sochdb_filter *filter, sochdb_scan **out);

/*
** sochdb_scan_next — the next row: out[i] for each column the scan asked
** for. Bytes stay valid until the next sochdb_scan_next or sochdb_scan_close
** on s. Returns SOCHDB_NOTFOUND when the scan is done.
**
** Errors: SOCHDB_INVALID (NULL argument; the scan's transaction has ended:
** close a scan before its transaction's commit or abort), SOCHDB_CORRUPT or
** SOCHDB_IO (an SSTable is damaged or could not be read; once a scan has
** returned one, every later call returns it again), SOCHDB_NOMEM.
*/
int  sochdb_scan_next(sochdb_scan *s, sochdb_value *out);

/* sochdb_scan_close — what the scan cost into *stats (may be NULL), added to
** the database's totals; frees s. NULL is a no-op. */
void sochdb_scan_close(sochdb_scan *s, sochdb_scan_stats *stats);

/*
** sochdb_scan_stats_get — the totals of every scan closed in any process
** since the shared region was created (`sochdb stats` shows them).
** Errors: SOCHDB_INVALID (NULL argument or handle inherited across fork).
*/
int  sochdb_scan_stats_get(sochdb *db, sochdb_scan_stats *out);

/*
** sochdb_region_path — the path of the shared region file of this handle
** (under /dev/shm, or $SOCHDB_SHM_DIR). Owned by db. Never NULL for a valid db.
*/
const char *sochdb_region_path(sochdb *db);

#ifdef __cplusplus
}
#endif
#endif /* SOCHDB_H */
