/*
** powercut.h — the power-loss mode of sochdb-stress (stress/README.md):
** what the LD_PRELOAD shim libsochdb-powercut.so (powercut.c) records and
** what the supervisor does with it (crashstate.c).
**
** The shim runs in the daemons of a power-loss cycle (LD_PRELOAD travels
** through the exec of sochdbd by a worker's library). It is configured by
**   SOCHDB_POWERCUT_STATE  the record log, a file outside the database
**                          directory; its directory also holds grave/, the
**                          graveyard of unlinked files (same file system),
**                          and old/, copies of bytes overwritten (O records);
**   SOCHDB_POWERCUT_DIR    the database directory: only files under it count;
**   SOCHDB_POWERCUT_LIE=1  a lying disk: a process's fsync/fdatasync of a
**                          WAL segment after its first one return success without
**                          syncing or recording anything (the self-test: a
**                          power cut must then lose acknowledged commits).
**
** The record log is text, one record per line, each line written with one
** write(2) to the file opened O_APPEND (atomic among the processes, and a
** process killed by SIGKILL leaves a whole line or none); every line ends
** with " #<fnv-1a of what precedes, hex>" and lines that do not are ignored:
**   F <dev> <ino> <size> <path>     after fsync/fdatasync of a regular file
**                                   returned 0: its first <size> bytes are
**                                   durable (size read before the call);
**   D <dir> <n> <name> <ino> ...    after fsync of directory <dir> returned
**                                   0: its listing, read before the call, is
**                                   durable;
**   U <dir> <name> <ino> <grave>    before unlink of <dir>/<name>: the file
**                                   was hard-linked as <grave> first;
**   R <dir> <name> <dir2> <name2> <ino> <oldino> <grave>
**                                   before rename of <dir>/<name> (inode
**                                   <ino>) to <dir2>/<name2>, which held
**                                   <oldino> (0: nothing; then <grave> "-"),
**                                   hard-linked as <grave>;
**   Z <dev> <ino> <off> <len> <path>
**                                   before a pwrite over bytes [off,
**                                   off+len) of a regular file that were all
**                                   zeros (the WAL's runway): until a later F
**                                   record of the file, they may be zeros
**                                   again after a power cut;
**   O <dev> <ino> <off> <len> <saved> <path>
**                                   before a pwrite over bytes [off,
**                                   off+len) of a regular file that were not
**                                   all zeros (a recycled WAL segment's old
**                                   incarnation): they were copied first into
**                                   the file <saved> (state directory's
**                                   old/); until a later F record of the
**                                   file, they may be back after a power cut;
**   X <what> <path>                 an operation the crash state cannot
**                                   undo (or an overwrite whose old bytes
**                                   could not be saved): pc_materialise
**                                   fails the run.
** Names are those of the database (no spaces); paths are realpath()s.
*/
#ifndef SOCHDB_STRESS_POWERCUT_H
#define SOCHDB_STRESS_POWERCUT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define PC_ENV_STATE "SOCHDB_POWERCUT_STATE"
#define PC_ENV_DIR   "SOCHDB_POWERCUT_DIR"
#define PC_ENV_LIE   "SOCHDB_POWERCUT_LIE"
#define PC_ENV_CUT   "SOCHDB_POWERCUT_CUT_AT"
#define PC_LIB       "libsochdb-powercut.so"
/* With $SOCHDB_POWERCUT_CUT_AT=N, each daemon cuts the power itself right
** after its K-th durable operation (an fsync, a rename or an unlink made;
** K random in 1..N): it creates <state dir>/cut and kills itself; a daemon
** started while that file exists waits to be killed, touching nothing; the
** supervisor ends the cycle as soon as it sees the file. So power goes at
** any step of a daemon's protocols, not only where SIGKILL happens to find
** a busy daemon. pc_materialise removes the file. */
#define PC_CUT_FILE  "cut"
/* The state directory's folder of the bytes O records saved before they
** were overwritten, one file per record. */
#define PC_OLD_DIR   "old"

/* Files of the database directory that are not the database's: the shim
** does not track them and a power cut leaves them alone (the daemon's log
** keeps the "fault point fired" lines the supervisor counts). */
static inline int pc_ignored_name(const char *name)
{
  return name[0] == '.' || !__builtin_strcmp(name, "LOCK") || !__builtin_strcmp(name, "LOCK.spawn") ||
         !__builtin_strcmp(name, "sochdbd.log");
}

static inline uint32_t pc_fnv(const char *p, size_t n)
{
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)p[i]) * 16777619u;
  return h;
}

/* What a power cut did (summed over a run). */
typedef struct pc_stats {
  unsigned cuts;             /* power cuts */
  uint64_t files_cut;        /* files cut back to their durable size (+ a prefix of the tail) */
  uint64_t files_torn;       /* ... of which with a torn (zeroed or garbage) sector */
  uint64_t files_kept;       /* files with an unsynced tail kept whole */
  uint64_t bytes_dropped;    /* unsynced bytes cut off */
  uint64_t bytes_torn;       /* unsynced bytes overwritten by a torn sector */
  uint64_t names_dropped;    /* names never made durable, removed */
  uint64_t names_restored;   /* unlinks and renames never made durable, undone */
  uint64_t shrunk;           /* files found shorter than their durable size (not undoable) */
  uint64_t overwrites_undone;  /* unsynced writes over zeros or old bytes reverted, whole or in part */
  uint64_t overwrites_kept;    /* ... kept */
  uint64_t files_checked;    /* files the file checker verified after the cuts */
} pc_stats;

/* crashstate.c, in the supervisor. The state directory holds the record log
** "log", the graveyard "grave/" and the saved old bytes "old/".
** pc_baseline: sync(), then record every file and directory under db as
** durable as it is now (a fresh record log, an empty graveyard).
** pc_materialise: turn db into a state a power cut could have left: undo
** the namespace operations not made durable, cut each file to its durable
** size plus a random part of its unsynced tail (maybe torn), and revert
** unsynced writes over zeros or over old bytes (whole, a suffix, or one torn
** sector); one line per change on `log`. Then the record log, the graveyard
** and old/ are emptied. 0, or -1 (message on stderr). */
int pc_baseline(const char *db, const char *state_dir);
int pc_materialise(const char *db, const char *state_dir, uint64_t *rng, FILE *log, pc_stats *st);

#endif
