/*
** compare.h — `sochdb-bench compare`: sochdb side by side with LMDB, SQLite
** (WAL mode) and RocksDB, through engine.h (bench/README.md explains it).
*/
#ifndef SOCHDB_BENCH_COMPARE_H
#define SOCHDB_BENCH_COMPARE_H

/* argv[0] is "compare"; returns the exit status: 0 when every workload ran on
** every engine and every value read back was right, 1 on a failure, 2 on a
** usage error. */
int compare_main(int argc, char **argv);

#endif /* SOCHDB_BENCH_COMPARE_H */
