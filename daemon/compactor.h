/*
** compactor.h — the daemon's compaction thread: leveled compaction
** (src/compaction.c picks and merges) with the daemon's I/O around it: map
** the inputs, write the outputs durably, record the swap in the MANIFEST,
** doom the inputs; rate-limited, and a full compaction on request
** (`sochdb compact`).
*/
#ifndef SOCHDB_DAEMON_COMPACTOR_H
#define SOCHDB_DAEMON_COMPACTOR_H

#include "store.h"

struct compactor {
  struct store            *s;
  struct compaction_picker picker;
  _Atomic int             *stop;    /* set when the daemon stops: a running compaction gives up */
  unsigned                 test_pause_ms;  /* sochdbd-testing: a pause per MiB read (a slow disk) */
};

/* One compaction if one is due (or requested). Returns 1 if it compacted, 0
** if nothing was due, or minus an error code. */
int  compactor_step(struct compactor *c);
void compactor_free(struct compactor *c);

#endif
