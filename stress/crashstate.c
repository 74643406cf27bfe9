/*
** crashstate.c — the supervisor's half of the power-loss mode (powercut.h):
** the baseline at the start of a power-loss cycle, and the crash state made
** from the shim's records once every process of the cycle is dead.
**
** The crash state, directory by directory (the database directory and its
** subdirectories, wal/):
**   1. the namespace: the operations recorded (unlinks, renames) after the
**      directory's last recorded fsync are kept up to a random cut and undone
**      after it, newest first — an unlink is undone by linking the file back
**      from the graveyard, a rename by moving the file back and linking the
**      file it replaced back in (metadata journals keep operations in order,
**      so a state never has a later operation without an earlier one); a name
**      neither the last fsync saw nor a kept operation made (a file created by
**      open) is dropped with probability 1/2;
**   2. the bytes: every file is cut to its durable size (its last fsync's
**      record; 0 for a file never synced) plus a random part of its unsynced
**      tail: none of it, a random prefix, all of it, or a random prefix with
**      one 512-byte sector in it zeroed or filled with garbage (torn);
**   3. writes over existing bytes after the file's last fsync (matched to the
**      file by device and inode, whatever its name now), newest first, within
**      what step 2 left of the file (never growing it): each is kept, has
**      what it overwrote put back — zeros for a write over zeros (Z records:
**      the WAL's runway), the saved old bytes for one over other bytes (O
**      records: a recycled WAL segment's previous incarnation) —, has that
**      put back after a random prefix, or has one 512-byte sector in it
**      zeroed or filled with garbage.
** Every change is one line on the cycle's power-cut log.
*/

#include "powercut.h"
#include "stress.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct rec {
  char type;                 /* F D U R Z O X */
  char *dir, *name, *dir2, *name2, *grave, *path;   /* O: grave is the saved old bytes */
  unsigned long long dev, ino, ino2;
  long long size;            /* F: durable size; Z, O: offset */
  long long len;             /* Z, O: bytes */
  char **names;              /* D: its listing */
  unsigned long long *inos;
  unsigned n;
} rec;

typedef struct recs {
  rec *r;
  size_t n, cap;
} recs;

static void rec_free(rec *r)
{
  free(r->dir), free(r->name), free(r->dir2), free(r->name2), free(r->grave), free(r->path);
  for (unsigned j = 0; r->names && j < r->n; j++) free(r->names[j]);
  free(r->names), free(r->inos);
}

static void recs_free(recs *v)
{
  for (size_t i = 0; i < v->n; i++) rec_free(&v->r[i]);
  free(v->r);
  memset(v, 0, sizeof *v);
}

static char *tok(char **p)
{
  char *s = *p;
  while (*s == ' ') s++;
  if (!*s) return NULL;
  char *e = strchr(s, ' ');
  if (e) *e++ = 0;
  else e = s + strlen(s);
  *p = e;
  return strdup(s);
}

static unsigned long long num(char **p)
{
  char *t = tok(p);
  unsigned long long v = t ? strtoull(t, NULL, 10) : 0;
  free(t);
  return v;
}

/* One line (without its newline); 0 if it was a valid record. */
static int parse_line(char *line, rec *r)
{
  memset(r, 0, sizeof *r);
  char *hash = strrchr(line, '#');
  if (!hash || hash == line || hash[-1] != ' ' || strlen(hash + 1) != 8) return -1;
  if (strtoul(hash + 1, NULL, 16) != pc_fnv(line, (size_t)(hash - 1 - line))) return -1;
  hash[-1] = 0;
  r->type = line[0];
  char *p = line + 1;
  switch (r->type) {
  case 'F':
    r->dev = num(&p);
    r->ino = num(&p);
    r->size = (long long)num(&p);
    while (*p == ' ') p++;
    r->path = strdup(p);
    return 0;
  case 'Z':
    r->dev = num(&p);
    r->ino = num(&p);
    r->size = (long long)num(&p);
    r->len = (long long)num(&p);
    while (*p == ' ') p++;
    r->path = strdup(p);
    return 0;
  case 'O':
    r->dev = num(&p);
    r->ino = num(&p);
    r->size = (long long)num(&p);
    r->len = (long long)num(&p);
    r->grave = tok(&p);
    while (*p == ' ') p++;
    r->path = strdup(p);
    return r->grave ? 0 : -1;
  case 'D':
    r->dir = tok(&p);
    r->n = (unsigned)num(&p);
    r->names = calloc(r->n + 1, sizeof *r->names);
    r->inos = calloc(r->n + 1, sizeof *r->inos);
    for (unsigned i = 0; i < r->n; i++) {
      r->names[i] = tok(&p);
      r->inos[i] = num(&p);
      if (!r->names[i]) return -1;
    }
    return r->dir ? 0 : -1;
  case 'U':
    r->dir = tok(&p);
    r->name = tok(&p);
    r->ino = num(&p);
    r->grave = tok(&p);
    return r->grave ? 0 : -1;
  case 'X':
    while (*p == ' ') p++;
    r->path = strdup(p);
    return 0;
  case 'R':
    r->dir = tok(&p);
    r->name = tok(&p);
    r->dir2 = tok(&p);
    r->name2 = tok(&p);
    r->ino = num(&p);
    r->ino2 = num(&p);
    r->grave = tok(&p);
    return r->grave ? 0 : -1;
  }
  return -1;
}

static int load(const char *file, recs *v)
{
  FILE *f = fopen(file, "r");
  if (!f) return errno == ENOENT ? 0 : -1;
  char *line = NULL;
  size_t cap = 0;
  ssize_t n;
  while ((n = getline(&line, &cap, f)) > 0) {
    if (line[n - 1] != '\n') break;   /* a torn last line */
    line[n - 1] = 0;
    if (v->n == v->cap) {
      v->cap = v->cap ? v->cap * 2 : 256;
      v->r = realloc(v->r, v->cap * sizeof *v->r);
    }
    rec r;
    if (parse_line(line, &r) == 0) v->r[v->n++] = r;
    else rec_free(&r);
  }
  free(line);
  fclose(f);
  return 0;
}

/* ------------------------------------------------------------ baseline */

static void append(FILE *f, const char *line)
{
  fprintf(f, "%s #%08x\n", line, pc_fnv(line, strlen(line)));
}

static int tracked_dirs(const char *db, char dirs[][PATH_MAX], int max)
{
  int n = 0;
  if (!realpath(db, dirs[n])) return -1;
  n++;
  DIR *d = opendir(dirs[0]);
  for (struct dirent *e; d && (e = readdir(d));) {
    char path[PATH_MAX + 300];
    struct stat st;
    if (e->d_name[0] == '.' || n >= max) continue;
    snprintf(path, sizeof path, "%s/%s", dirs[0], e->d_name);
    if (lstat(path, &st) == 0 && S_ISDIR(st.st_mode)) snprintf(dirs[n++], PATH_MAX, "%.4095s", path);
  }
  if (d) closedir(d);
  return n;
}

int pc_baseline(const char *db, const char *state_dir)
{
  char dirs[16][PATH_MAX], path[PATH_MAX + 300];
  sync();
  st_rmrf(st_path(path, sizeof path, state_dir, PC_OLD_DIR));   /* the shim makes it when it needs it */
  st_rmrf(st_path(path, sizeof path, state_dir, "grave"));
  st_mkdir(state_dir);
  st_mkdir(path);
  int nd = tracked_dirs(db, dirs, 16);
  FILE *f = fopen(st_path(path, sizeof path, state_dir, "log"), "w");
  if (nd < 0 || !f) {
    perror(path);
    if (f) fclose(f);
    return -1;
  }
  st_buf line = { 0 }, body = { 0 };
  for (int i = 0; i < nd; i++) {
    DIR *d = opendir(dirs[i]);
    unsigned n = 0;
    body.len = 0;
    for (struct dirent *e; d && (e = readdir(d));) {
      if (pc_ignored_name(e->d_name) || strchr(e->d_name, ' ')) continue;
      struct stat st;
      snprintf(path, sizeof path, "%.4095s/%.255s", dirs[i], e->d_name);
      int ok = lstat(path, &st) == 0;
      st_buf_printf(&body, " %s %llu", e->d_name, ok ? (unsigned long long)st.st_ino : 0ull);
      n++;
      if (ok && S_ISREG(st.st_mode)) {
        line.len = 0;
        st_buf_printf(&line, "F %llu %llu %lld %s", (unsigned long long)st.st_dev, (unsigned long long)st.st_ino,
                      (long long)st.st_size, path);
        append(f, line.p);
      }
    }
    if (d) closedir(d);
    line.len = 0;
    st_buf_printf(&line, "D %s %u%s", dirs[i], n, body.len ? body.p : "");
    append(f, line.p);
  }
  st_buf_free(&line);
  st_buf_free(&body);
  return fclose(f) == 0 ? 0 : -1;
}

/* ------------------------------------------------------------ the crash state */

static unsigned long long ino_of(const char *dir, const char *name)
{
  char path[PATH_MAX * 2];
  struct stat st;
  snprintf(path, sizeof path, "%.4095s/%.255s", dir, name);
  return lstat(path, &st) == 0 ? (unsigned long long)st.st_ino : 0;
}

static const char *base(const char *dir)
{
  const char *s = strrchr(dir, '/');
  return s ? s + 1 : dir;
}

/* Undo r (an unlink or a rename); 1 if something changed. */
static int undo(const rec *r, FILE *log, pc_stats *st)
{
  char a[PATH_MAX * 2], b[PATH_MAX * 2];
  if (r->type == 'U') {
    snprintf(a, sizeof a, "%s/%s", r->dir, r->name);
    unsigned long long now = ino_of(r->dir, r->name);
    if (now == r->ino) return 0;   /* the unlink never happened */
    if (now) unlink(a);
    if (link(r->grave, a) != 0) {
      fprintf(log, "%s: cannot bring back the unlinked file: %s\n", a, strerror(errno));
      return 0;
    }
    fprintf(log, "%s/%s: unlinked, the unlink not durable: back from the graveyard\n", base(r->dir), r->name);
    st->names_restored++;
    return 1;
  }
  snprintf(a, sizeof a, "%s/%s", r->dir, r->name);
  snprintf(b, sizeof b, "%s/%s", r->dir2, r->name2);
  if (ino_of(r->dir2, r->name2) != r->ino) return 0;   /* the rename never happened */
  if (rename(b, a) != 0) {
    fprintf(log, "%s: cannot move back to %s: %s\n", b, a, strerror(errno));
    return 0;
  }
  if (r->ino2 && link(r->grave, b) != 0) fprintf(log, "%s: cannot bring back the replaced file: %s\n", b, strerror(errno));
  fprintf(log, "%s/%s: renamed from %s, the rename not durable: reverted%s\n", base(r->dir2), r->name2, r->name,
          r->ino2 ? " (the file it replaced is back)" : "");
  st->names_restored++;
  return 1;
}

/* Whether the listing has name for inode ino: a name it has for another
** inode (unlinked since, and made again by open) is not durable. */
static int in_listing(const rec *d, const char *name, unsigned long long ino)
{
  for (unsigned i = 0; d && i < d->n; i++)
    if (!strcmp(d->names[i], name)) return d->inos[i] == ino;
  return 0;
}

static int touches(const rec *r, const char *dir)
{
  return (r->type == 'U' && !strcmp(r->dir, dir)) ||
         (r->type == 'R' && (!strcmp(r->dir2, dir) || !strcmp(r->dir, dir)));
}

static void namespace(const recs *v, const char *dir, uint64_t *rng, FILE *log, pc_stats *st)
{
  ssize_t last = -1;
  for (size_t i = 0; i < v->n; i++)
    if (v->r[i].type == 'D' && !strcmp(v->r[i].dir, dir)) last = (ssize_t)i;
  const rec *durable = last >= 0 ? &v->r[last] : NULL;
  size_t *ops = malloc((v->n + 1) * sizeof *ops), n = 0;
  for (size_t i = (size_t)(last + 1); i < v->n; i++)
    if (touches(&v->r[i], dir)) ops[n++] = i;
  /* keep ops[0..cut): all of them a third of the time, else a random prefix */
  size_t cut = st_below(rng, 3) == 0 ? n : st_below(rng, (unsigned)n + 1);
  for (size_t i = n; i > cut; i--) undo(&v->r[ops[i - 1]], log, st);
  /* names neither durable nor made by a kept operation: created by open() */
  DIR *d = opendir(dir);
  for (struct dirent *e; d && (e = readdir(d));) {
    if (pc_ignored_name(e->d_name)) continue;
    char path[PATH_MAX * 2];
    struct stat s;
    snprintf(path, sizeof path, "%.4095s/%.255s", dir, e->d_name);
    if (lstat(path, &s) != 0 || !S_ISREG(s.st_mode) || in_listing(durable, e->d_name, (unsigned long long)s.st_ino))
      continue;
    int made = 0;
    for (size_t i = 0; i < cut && !made; i++) {
      const rec *r = &v->r[ops[i]];
      made = r->type == 'R' && !strcmp(r->dir2, dir) && !strcmp(r->name2, e->d_name) &&
             r->ino == (unsigned long long)s.st_ino;
    }
    if (made || st_below(rng, 2)) continue;
    if (unlink(path) == 0) {
      fprintf(log, "%s/%s: created, its name never made durable: dropped\n", base(dir), e->d_name);
      st->names_dropped++;
    }
  }
  if (d) closedir(d);
  free(ops);
}

/* The record index after the file's last F record (0: none), its size in *size (0: never synced). */
static size_t last_sync(const recs *v, unsigned long long dev, unsigned long long ino, long long *size)
{
  for (size_t i = v->n; i > 0; i--)
    if (v->r[i - 1].type == 'F' && v->r[i - 1].dev == dev && v->r[i - 1].ino == ino) {
      *size = v->r[i - 1].size;
      return i;
    }
  *size = 0;
  return 0;
}

static long long durable_size(const recs *v, unsigned long long dev, unsigned long long ino)
{
  long long size;
  last_sync(v, dev, ino, &size);
  return size;
}

/* Fill [lo, hi) of fd with zeros, or garbage; 0 if done. */
static int fill(int fd, long long lo, long long hi, int garbage, uint64_t *rng)
{
  unsigned char buf[4096];
  for (long long at = lo; at < hi;) {
    size_t n = hi - at < (long long)sizeof buf ? (size_t)(hi - at) : sizeof buf;
    for (size_t i = 0; i < n; i++) buf[i] = garbage ? (unsigned char)st_rand(rng) : 0;
    if (pwrite(fd, buf, n, (off_t)at) != (ssize_t)n) return -1;
    at += (long long)n;
  }
  return 0;
}

/* Put bytes [lo, hi) of fd back as they were before write r: zeros (Z), or
** the old bytes r saved (O; byte k of its copy was at r->size + k); 0 if
** done. Callers clip hi to the file's size: this never grows the file. */
static int put_back(const rec *r, int fd, long long lo, long long hi, uint64_t *rng)
{
  if (r->type == 'Z')
    return fill(fd, lo, hi, 0, rng);
  int in = open(r->grave, O_RDONLY | O_CLOEXEC), rc = in >= 0 ? 0 : -1;
  unsigned char buf[4096];
  for (long long at = lo; rc == 0 && at < hi;) {
    size_t n = hi - at < (long long)sizeof buf ? (size_t)(hi - at) : sizeof buf;
    ssize_t got = pread(in, buf, n, (off_t)(at - r->size));
    rc = got > 0 && pwrite(fd, buf, (size_t)got, (off_t)at) == got ? 0 : -1;
    at += got;
  }
  if (in >= 0)
    close(in);
  return rc;
}

/* One 512-byte sector of the disk (aligned in the file) within [wlo, whi),
** the written bytes kept: zeroed or garbage, described in `torn`; 0 if done. */
static int tear(int fd, long long wlo, long long whi, uint64_t *rng, char *torn, size_t cap)
{
  long long at = (wlo + (long long)(st_rand(rng) % (uint64_t)(whi - wlo))) & ~511LL;
  long long slo = at < wlo ? wlo : at, shi = at + 512 < whi ? at + 512 : whi;
  int garbage = st_below(rng, 2);
  snprintf(torn, cap, ", bytes %lld..%lld %s (torn sector)", slo, shi, garbage ? "garbage" : "zeroed");
  return fill(fd, slo, shi, garbage, rng);
}

/* Step 3 for one unsynced write r over bytes of fd (`len` bytes after step
** 2): kept, put back, put back after a prefix, or torn; a lying disk puts
** it back whole. */
static void revert(const rec *r, int fd, long long len, int lie, const char *dir, const char *name, uint64_t *rng,
                   FILE *log, pc_stats *st)
{
  long long lo = r->size, hi = r->size + r->len < len ? r->size + r->len : len;
  if (lo >= hi)
    return;   /* all of it past what step 2 kept */
  unsigned how = lie ? 1 : st_below(rng, 4);
  if (how == 0) {
    st->overwrites_kept++;
    return;
  }
  int zeros = r->type == 'Z';
  const char *what = zeros ? "made zeros again" : "old bytes put back";
  long long wlo = lo, whi = hi;   /* the written bytes the power cut may tear */
  int ok = 1;
  if (how == 2) {
    lo += (long long)(st_rand(rng) % (uint64_t)(hi - lo));
    whi = lo;
    what = zeros ? "made zeros again after a prefix" : "old bytes put back after a prefix";
  }
  if (how != 3)
    ok = put_back(r, fd, lo, hi, rng) == 0;
  char torn[160] = "";
  if ((how == 3 || (how == 2 && st_below(rng, 2))) && whi > wlo) {
    ok = tear(fd, wlo, whi, rng, torn, sizeof torn) == 0 && ok;
    if (how == 3)
      lo = hi = 0, what = "kept";
  }
  fprintf(log, "%s/%s: unsynced write over %s at %lld (%lld bytes): bytes %lld..%lld %s%s%s\n", base(dir), name,
          zeros ? "zeros" : "old bytes", r->size, r->len, lo, hi, what, torn, ok ? "" : " FAILED");
  st->overwrites_undone++;
}

/* Step 3 for one file (open as fd, `len` bytes after step 2): its writes
** over existing bytes that no sync covered, newest first (an older write's
** old bytes go back over what a newer one's revert left). With a lying
** disk, only the newest WAL segment's are undone, all of them (see
** cut_file). */
static void undo_overwrites(const recs *v, int fd, const struct stat *s, long long len, int lie, const char *dir,
                            const char *name, uint64_t *rng, FILE *log, pc_stats *st)
{
  long long dur;
  size_t from = last_sync(v, (unsigned long long)s->st_dev, (unsigned long long)s->st_ino, &dur);
  for (size_t i = v->n; i > from; i--) {
    const rec *r = &v->r[i - 1];
    if ((r->type == 'Z' || r->type == 'O') && r->dev == (unsigned long long)s->st_dev &&
        r->ino == (unsigned long long)s->st_ino)
      revert(r, fd, len, lie, dir, name, rng, log, st);
  }
}

/* Cut one file to its durable size plus a random part of its unsynced tail
** (steps 2 and 3 of the header). */
static void cut_tail(const recs *v, const char *dir, const char *name, int newest, uint64_t *rng, FILE *log,
                     pc_stats *st);

static void cut_file(const recs *v, const char *dir, const char *name, int newest, uint64_t *rng, FILE *log,
                     pc_stats *st)
{
  cut_tail(v, dir, name, newest, rng, log, st);
  char path[PATH_MAX * 2];
  snprintf(path, sizeof path, "%.4095s/%.255s", dir, name);
  const char *lie = getenv(PC_ENV_LIE);
  int lying = lie && *lie && strcmp(lie, "0") != 0;
  if (lying && !newest)
    return;
  int fd = open(path, O_RDWR | O_CLOEXEC);
  struct stat s;
  if (fd >= 0 && fstat(fd, &s) == 0 && S_ISREG(s.st_mode))
    undo_overwrites(v, fd, &s, (long long)s.st_size, lying, dir, name, rng, log, st);
  if (fd >= 0)
    close(fd);
}

static void cut_tail(const recs *v, const char *dir, const char *name, int newest, uint64_t *rng, FILE *log,
                     pc_stats *st)
{
  char path[PATH_MAX * 2];
  snprintf(path, sizeof path, "%.4095s/%.255s", dir, name);
  int fd = open(path, O_RDWR | O_CLOEXEC);
  struct stat s;
  if (fd < 0 || fstat(fd, &s) != 0 || !S_ISREG(s.st_mode)) {
    if (fd >= 0) close(fd);
    return;
  }
  long long dur = durable_size(v, (unsigned long long)s.st_dev, (unsigned long long)s.st_ino), size = s.st_size;
  if (size < dur) {
    fprintf(log, "%s/%s: %lld bytes, shorter than its durable %lld (truncated after a sync: not undoable)\n",
            base(dir), name, size, dur);
    st->shrunk++;
  }
  if (size <= dur) {
    close(fd);
    return;
  }
  long long tail = size - dur, keep;
  unsigned how = st_below(rng, 4);
  /* A lying disk (the self-test) leaves many acknowledged groups unsynced:
  ** damage among them with intact groups after it, or in a segment that is
  ** not the last, is damage the engine rightly refuses (it cannot tell it
  ** from damage to durable data). The self-test wants lost commits: only the
  ** newest segment loses its tail, cut cleanly. */
  const char *lie = getenv(PC_ENV_LIE);
  if (lie && *lie && strcmp(lie, "0") != 0) {
    if (!newest) {
      close(fd);
      return;
    }
    how = 0;
  }
  if (how == 0) keep = 0;
  else if (how == 1) keep = tail;
  else keep = 1 + (long long)(st_rand(rng) % (uint64_t)tail);
  if (keep == tail && how != 3) {
    fprintf(log, "%s/%s: unsynced tail of %lld bytes (durable %lld) kept whole\n", base(dir), name, tail, dur);
    st->files_kept++;
    close(fd);
    return;
  }
  long long len = dur + keep;
  int ok = ftruncate(fd, (off_t)len) == 0;
  char torn[160] = "";
  if (ok && how == 3) {
    /* one 512-byte sector of the kept tail (never of the durable part) */
    long long at = dur + (long long)(st_rand(rng) % (uint64_t)keep);
    long long lo = at & ~511LL, hi = lo + 512;
    if (lo < dur) lo = dur;
    if (hi > len) hi = len;
    unsigned char buf[512];
    int zero = st_below(rng, 2);
    for (int i = 0; i < 512; i++) buf[i] = zero ? 0 : (unsigned char)st_rand(rng);
    ok = pwrite(fd, buf, (size_t)(hi - lo), (off_t)lo) == (ssize_t)(hi - lo);
    snprintf(torn, sizeof torn, ", bytes %lld..%lld %s (torn sector)", lo, hi, zero ? "zeroed" : "garbage");
    st->files_torn++;
    st->bytes_torn += (uint64_t)(hi - lo);
  }
  close(fd);
  fprintf(log, "%s/%s: %lld bytes, durable %lld: cut to %lld (%lld unsynced bytes dropped)%s%s\n", base(dir), name,
          size, dur, len, tail - keep, torn, ok ? "" : " FAILED");
  st->files_cut++;
  st->bytes_dropped += (uint64_t)(tail - keep);
}

int pc_materialise(const char *db, const char *state_dir, uint64_t *rng, FILE *log, pc_stats *st)
{
  char path[PATH_MAX + 300], dirs[16][PATH_MAX];
  recs v = { 0 };
  if (load(st_path(path, sizeof path, state_dir, "log"), &v) != 0) {
    perror(path);
    return -1;
  }
  int nd = tracked_dirs(db, dirs, 16);
  if (nd < 0) {
    perror(db);
    recs_free(&v);
    return -1;
  }
  for (size_t i = 0; i < v.n; i++)
    if (v.r[i].type == 'X') {
      fprintf(stderr, "sochdb-stress: a daemon did %s, which the power-loss mode cannot model (stress/powercut.c)\n",
              v.r[i].path);
      recs_free(&v);
      return -1;
    }
  fprintf(log, "power cut: %zu records\n", v.n);
  for (int i = 0; i < nd; i++) namespace(&v, dirs[i], rng, log, st);
  for (int i = 0; i < nd; i++) {
    /* the newest WAL segment (for the lying disk) */
    char newest[256] = "";
    DIR *d = opendir(dirs[i]);
    for (struct dirent *e; d && (e = readdir(d));) {
      size_t len = strlen(e->d_name);
      if (len > 4 && !strcmp(e->d_name + len - 4, ".wal") && strcmp(e->d_name, newest) > 0)
        snprintf(newest, sizeof newest, "%s", e->d_name);
    }
    if (d) rewinddir(d);
    for (struct dirent *e; d && (e = readdir(d));)
      if (!pc_ignored_name(e->d_name)) cut_file(&v, dirs[i], e->d_name, !strcmp(e->d_name, newest), rng, log, st);
    if (d) closedir(d);
  }
  st->cuts++;
  recs_free(&v);
  sync();
  /* after the reboot, what is on disk is the durable state */
  st_rmrf(st_path(path, sizeof path, state_dir, "grave"));
  st_rmrf(st_path(path, sizeof path, state_dir, PC_OLD_DIR));
  unlink(st_path(path, sizeof path, state_dir, "log"));
  unlink(st_path(path, sizeof path, state_dir, PC_CUT_FILE));
  return 0;
}
