/*
** powercut.c — libsochdb-powercut.so, the LD_PRELOAD shim of sochdb-stress's
** power-loss mode (powercut.h has the record format, stress/README.md the
** design). It interposes:
**
**   fsync, fdatasync       after the real call returned 0, record what it
**                          made durable: a regular file's size (read before
**                          the call: bytes written concurrently may not be
**                          durable) or a directory's listing (read before the
**                          call, for the same reason; one directory sync at a
**                          time, so listings are recorded in the order they
**                          were read). A record is never
**                          ahead of the disk, and every commit the daemon
**                          acknowledges has its record, because it
**                          acknowledges only after fdatasync returned.
**   unlink, unlinkat       hard-link the file into the graveyard and record
**                          it before the real unlink, so that a power cut can
**                          bring back a name whose removal no directory fsync
**                          made durable;
**   rename, renameat, renameat2
**                          the same for the file a rename replaces, and the
**                          move itself, so that a power cut can revert it;
**   pwrite, pwrite64 (and write, writev, the pwritev variants and
**   copy_file_range, which go through the same hook)
**                          before a write over existing bytes of a regular
**                          file, record the range, so that a power cut before
**                          the file's next sync can put back what was there:
**                          zeros (a Z record; the WAL's runway: groups are
**                          written over zeros laid ahead of them), or bytes
**                          that are not all zeros (an O record: a recycled
**                          WAL segment's groups are written over the bytes of
**                          its previous incarnation), whose old bytes are
**                          copied first into the state directory's old/.
**                          Old bytes that cannot be saved make an X record:
**                          the write goes ahead, and the run fails at the cut
**                          rather than pass on a state it could not model.
**
** Only paths under $SOCHDB_POWERCUT_DIR are tracked; without
** $SOCHDB_POWERCUT_STATE the shim does nothing. With SOCHDB_POWERCUT_LIE=1
** the disk lies: a process's syncs of a WAL segment after its first one
** return 0 without syncing or recording anything (see lie_now).
**
** Not interposed (documented limits): writes no hook sees (stores through a
** shared writable mapping, syscall()) only make X records, and truncations
** of synced data cannot be undone (sochdb does none of these to data it
** relies on); open(O_CREAT) is not recorded (a created name the last
** directory fsync did not see may vanish at the cut, which is what a power
** cut may do to it).
*/

#include "powercut.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

static char state_path[PATH_MAX], grave_dir[PATH_MAX], old_dir[PATH_MAX], db_dir[PATH_MAX];
static size_t db_len;
static int active, lie;
static char cut_path[PATH_MAX];
static _Atomic long cut_left;   /* durable operations before the cut; 0: no cut */
static int cut_ns_only;         /* ... counting only renames, unlinks and directory syncs */
static _Atomic unsigned grave_ctr;

static int (*real_fsync)(int);
static int (*real_fdatasync)(int);
static int (*real_unlink)(const char *);
static int (*real_unlinkat)(int, const char *, int);
static int (*real_rename)(const char *, const char *);
static int (*real_renameat)(int, const char *, int, const char *);
static int (*real_renameat2)(int, const char *, int, const char *, unsigned);
static ssize_t (*real_pwrite)(int, const void *, size_t, off_t);
static ssize_t (*real_pwrite64)(int, const void *, size_t, off64_t);
static ssize_t (*real_write)(int, const void *, size_t);
static ssize_t (*real_writev)(int, const struct iovec *, int);
static ssize_t (*real_pwritev)(int, const struct iovec *, int, off_t);
static ssize_t (*real_pwritev64)(int, const struct iovec *, int, off64_t);
static ssize_t (*real_pwritev2)(int, const struct iovec *, int, off_t, int);
static ssize_t (*real_copy_file_range)(int, off64_t *, int, off64_t *, size_t, unsigned);
static int (*real_remove)(const char *);
static int (*real_fallocate)(int, int, off_t, off_t);
static void *(*real_mmap)(void *, size_t, int, int, int, off_t);

__attribute__((constructor)) static void pc_init(void)
{
  real_fsync = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
  real_fdatasync = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
  real_unlink = (int (*)(const char *))dlsym(RTLD_NEXT, "unlink");
  real_unlinkat = (int (*)(int, const char *, int))dlsym(RTLD_NEXT, "unlinkat");
  real_rename = (int (*)(const char *, const char *))dlsym(RTLD_NEXT, "rename");
  real_renameat = (int (*)(int, const char *, int, const char *))dlsym(RTLD_NEXT, "renameat");
  real_renameat2 = (int (*)(int, const char *, int, const char *, unsigned))dlsym(RTLD_NEXT, "renameat2");
  real_pwrite = (ssize_t (*)(int, const void *, size_t, off_t))dlsym(RTLD_NEXT, "pwrite");
  real_pwrite64 = (ssize_t (*)(int, const void *, size_t, off64_t))dlsym(RTLD_NEXT, "pwrite64");
  real_write = (ssize_t (*)(int, const void *, size_t))dlsym(RTLD_NEXT, "write");
  real_writev = (ssize_t (*)(int, const struct iovec *, int))dlsym(RTLD_NEXT, "writev");
  real_pwritev = (ssize_t (*)(int, const struct iovec *, int, off_t))dlsym(RTLD_NEXT, "pwritev");
  real_pwritev64 = (ssize_t (*)(int, const struct iovec *, int, off64_t))dlsym(RTLD_NEXT, "pwritev64");
  real_pwritev2 = (ssize_t (*)(int, const struct iovec *, int, off_t, int))dlsym(RTLD_NEXT, "pwritev2");
  real_copy_file_range =
    (ssize_t (*)(int, off64_t *, int, off64_t *, size_t, unsigned))dlsym(RTLD_NEXT, "copy_file_range");
  real_remove = (int (*)(const char *))dlsym(RTLD_NEXT, "remove");
  real_fallocate = (int (*)(int, int, off_t, off_t))dlsym(RTLD_NEXT, "fallocate");
  real_mmap = (void *(*)(void *, size_t, int, int, int, off_t))dlsym(RTLD_NEXT, "mmap");
  const char *st = getenv(PC_ENV_STATE), *dir = getenv(PC_ENV_DIR), *l = getenv(PC_ENV_LIE);
  lie = l && *l && strcmp(l, "0") != 0;
  if (!st || !*st || !dir || !*dir || !realpath(dir, db_dir)) return;
  snprintf(state_path, sizeof state_path, "%s", st);
  char copy[PATH_MAX];
  snprintf(copy, sizeof copy, "%s", st);
  char *slash = strrchr(copy, '/');
  if (slash) *slash = 0;
  snprintf(grave_dir, sizeof grave_dir, "%.4000s/grave", slash ? copy : ".");
  snprintf(old_dir, sizeof old_dir, "%.4000s/" PC_OLD_DIR, slash ? copy : ".");
  db_len = strlen(db_dir);
  active = 1;
  snprintf(cut_path, sizeof cut_path, "%.4000s/" PC_CUT_FILE, slash ? copy : ".");
  const char *cut = getenv(PC_ENV_CUT);
  long n = cut ? strtol(cut, NULL, 10) : 0;
  if (n > 0) {
    if (access(cut_path, F_OK) == 0)
      for (;;) pause();   /* after the cut: nothing more reaches the disk */
    unsigned seed = (unsigned)getpid() * 2654435761u ^ (unsigned)(uintptr_t)&n;
    /* Half the daemons count only namespace operations (a rename, an unlink,
    ** a directory sync), which are few: a cut right after one, before the
    ** data it names is synced, is the state a protocol's order must survive. */
    cut_ns_only = rand_r(&seed) % 2;
    cut_left = 1 + (long)(rand_r(&seed) % (unsigned)(cut_ns_only ? 16 : n));
  }
}

/* After one durable operation (its record written): the power goes now? */
static void maybe_cut(int ns)
{
  if ((ns || !cut_ns_only) && cut_left > 0 && atomic_fetch_sub(&cut_left, 1) == 1) {
    int fd = open(cut_path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd >= 0) close(fd);
    kill(getpid(), SIGKILL);
  }
}

/* ------------------------------------------------------------ records */

/* Append one record (with its checksum) with one write(2). */
__attribute__((format(printf, 1, 2))) static void record(const char *fmt, ...)
{
  /* sized to fit: a directory's listing outgrows any fixed buffer, and a
  ** D record dropped for its size would make the crash state fall back on
  ** an older listing */
  va_list ap;
  va_start(ap, fmt);
  int need = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  size_t cap = need < 0 ? 0 : (size_t)need + 1;
  char *buf = cap ? malloc(cap + 32) : NULL;
  if (!buf) return;
  va_start(ap, fmt);
  int n = vsnprintf(buf, cap, fmt, ap);
  va_end(ap);
  if (n < 0 || (size_t)n >= cap) {
    free(buf);
    return;
  }
  n += snprintf(buf + n, 32, " #%08x\n", pc_fnv(buf, (size_t)n));
  int saved = errno;
  int fd = open(state_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd >= 0) {
    if ((real_write ? real_write : write)(fd, buf, (size_t)n) != n) { /* the record is simply missing */ }
    close(fd);
  }
  errno = saved;
  free(buf);
}

static int under_db(const char *real)
{
  return !strncmp(real, db_dir, db_len) && (real[db_len] == '/' || real[db_len] == 0);
}

/* The real directory and name of path (relative to dirfd); 0 if tracked. */
static int resolve(int dirfd, const char *path, char *dir, char *name)
{
  if (!active || !path || !*path) return -1;
  char full[PATH_MAX * 2], parent[PATH_MAX * 2];
  if (path[0] == '/' || dirfd == AT_FDCWD) {
    snprintf(full, sizeof full, "%s", path);
  } else {
    char link[64], at[PATH_MAX];
    snprintf(link, sizeof link, "/proc/self/fd/%d", dirfd);
    ssize_t n = readlink(link, at, sizeof at - 1);
    if (n <= 0) return -1;
    at[n] = 0;
    snprintf(full, sizeof full, "%s/%s", at, path);
  }
  size_t len = strlen(full);
  while (len > 1 && full[len - 1] == '/') full[--len] = 0;
  const char *slash = strrchr(full, '/');
  const char *base = slash ? slash + 1 : full;
  if (!*base || !strcmp(base, ".") || !strcmp(base, "..") || strlen(base) >= NAME_MAX + 1) return -1;
  if (slash == full) snprintf(parent, sizeof parent, "/");
  else if (slash) snprintf(parent, sizeof parent, "%.*s", (int)(slash - full), full);
  else snprintf(parent, sizeof parent, ".");
  if (!realpath(parent, dir) || !under_db(dir) || pc_ignored_name(base)) return -1;
  for (const char *p = base; *p; p++)
    if (*p == ' ' || *p == '\n') return -1;
  snprintf(name, NAME_MAX + 1, "%s", base);
  return 0;
}

/* Hard-link dir/name into the graveyard; its inode in *ino; 0 if done. */
static int bury(const char *dir, const char *name, char *grave, size_t n, unsigned long long *ino)
{
  char path[PATH_MAX * 2];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  struct stat st;
  if (lstat(path, &st) != 0 || !S_ISREG(st.st_mode)) return -1;
  *ino = (unsigned long long)st.st_ino;
  mkdir(grave_dir, 0755);
  snprintf(grave, n, "%s/%d-%u", grave_dir, (int)getpid(), atomic_fetch_add(&grave_ctr, 1));
  return link(path, grave);
}

/* ------------------------------------------------------------ syncs */

static int fd_path(int fd, char *out)
{
  char link[64];
  snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  ssize_t n = readlink(link, out, PATH_MAX - 1);
  if (n <= 0) return -1;
  out[n] = 0;
  return under_db(out) ? 0 : -1;
}

/* A directory's listing as a record body ("<n> name ino ..."), malloc'ed. */
static char *listing(const char *dir)
{
  DIR *d = opendir(dir);
  if (!d) return NULL;
  size_t cap = 4096, len = 0;
  char *out = malloc(cap), *body = NULL;
  unsigned n = 0;
  for (struct dirent *e; out && (e = readdir(d));) {
    if (pc_ignored_name(e->d_name) || strchr(e->d_name, ' ')) continue;
    if (len + strlen(e->d_name) + 32 > cap) {
      char *g = realloc(out, cap *= 2);
      if (!g) break;
      out = g;
    }
    struct stat st;   /* the inode stat() gives, which the crash state compares (d_ino may differ: overlayfs) */
    unsigned long long ino = fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 ? st.st_ino : 0;
    len += (size_t)sprintf(out + len, " %s %llu", e->d_name, ino);
    n++;
  }
  closedir(d);
  if (out && (body = malloc(len + 32))) sprintf(body, "%u%s", n, len ? out : "");
  free(out);
  return body;
}

/* The lying disk lies about WAL segments (files under a wal/ directory):
** it keeps a segment's first sync in this process (its header, or what an
** adopting daemon found) and drops the later ones (the group commits). The
** MANIFEST and SSTables stay honest, so the database stays readable: what a
** power cut takes is the commits acknowledged after those syncs. */
static pthread_mutex_t lie_mu = PTHREAD_MUTEX_INITIALIZER;
static struct { dev_t dev; ino_t ino; } lie_seen[1024];
static unsigned lie_n;

/* A WAL segment renamed away from its name (retired, to be recycled as a
** new segment) starts over: the first sync of its next incarnation (its new
** header) is kept, as a new file's would be. */
static void lie_forget(const char *name, const struct stat *st)
{
  size_t len = strlen(name);
  if (!lie || len < 4 || strcmp(name + len - 4, ".wal") != 0) return;
  pthread_mutex_lock(&lie_mu);
  for (unsigned i = 0; i < lie_n; i++)
    if (lie_seen[i].dev == st->st_dev && lie_seen[i].ino == st->st_ino) lie_seen[i] = lie_seen[--lie_n];
  pthread_mutex_unlock(&lie_mu);
}

static int lie_now(const char *path, const struct stat *st)
{
  if (!lie || !S_ISREG(st->st_mode) || !strstr(path + db_len, "/wal/")) return 0;
  pthread_mutex_lock(&lie_mu);
  int seen = 0;
  for (unsigned i = 0; i < lie_n && !seen; i++) seen = lie_seen[i].dev == st->st_dev && lie_seen[i].ino == st->st_ino;
  if (!seen && lie_n < 1024) {
    lie_seen[lie_n].dev = st->st_dev;
    lie_seen[lie_n++].ino = st->st_ino;
  }
  pthread_mutex_unlock(&lie_mu);
  return seen;
}

/* Directory syncs hold it for writing from the listing to the record; an
** unlink or a rename holds it for reading from its record to its real call.
** So an operation recorded before a listing is done before it (the listing
** shows it), and one recorded after the D record is done after the sync
** returned (undoable): without it, an unlink recorded, then a listing that
** still has the name, then the unlink, left a D record after the U record
** that the crash state took as making the unlink durable, however late it
** came. It also keeps directory syncs one at a time in this process, so
** the last listing recorded is the newest. */
static pthread_rwlock_t ns_lock = PTHREAD_RWLOCK_INITIALIZER;

static int synced(int fd, int (*real)(int))
{
  char path[PATH_MAX];
  struct stat st;
  if (!active || !real || fd_path(fd, path) != 0 || fstat(fd, &st) != 0) return real ? real(fd) : (errno = ENOSYS, -1);
  if (lie_now(path, &st)) return 0;   /* a lying disk: nothing synced, nothing recorded */
  if (S_ISDIR(st.st_mode)) {
    /* One directory sync at a time in this process: the crash state takes
    ** the last listing recorded as the directory's durable names, so the
    ** listings must be recorded in the order they were read. Unlocked, the
    ** flusher's sync could list a new table's name and record it, and the
    ** compactor's, listed earlier without that name, be recorded after it:
    ** the table the MANIFEST then named was dropped at the cut (a stress
    ** run's "created, its name never made durable" on a table listed at
    ** level 0). */
    pthread_rwlock_wrlock(&ns_lock);
    char *body = listing(path);
    int rc = real(fd);
    if (rc == 0 && body) {
      int saved = errno;
      record("D %s %s", path, body);
      errno = saved;
    }
    pthread_rwlock_unlock(&ns_lock);
    free(body);
    if (rc == 0) maybe_cut(1);
    return rc;
  }
  if (!S_ISREG(st.st_mode)) return real(fd);
  const char *base = strrchr(path, '/');
  if (base && pc_ignored_name(base + 1)) return real(fd);
  int rc = real(fd);
  struct stat after;
  if (rc == 0) {
    int saved = errno;
    off_t size = fstat(fd, &after) == 0 && after.st_size < st.st_size ? after.st_size : st.st_size;
    record("F %llu %llu %lld %s", (unsigned long long)st.st_dev, (unsigned long long)st.st_ino, (long long)size,
           path);
    errno = saved;
    maybe_cut(0);
  }
  return rc;
}

int fsync(int fd)
{
  if (!real_fsync) pc_init();
  return synced(fd, real_fsync);
}

int fdatasync(int fd)
{
  if (!real_fdatasync) pc_init();
  return synced(fd, real_fdatasync);
}

/* ------------------------------------------------------------ unmodelled */

/* An operation on a tracked file that a power cut could undo and the crash
** state cannot: an X record, which makes pc_materialise fail the run rather
** than let it pass on a state no disk could be trusted to leave. */
static void unmodelled(const char *what, int dirfd, const char *path)
{
  char dir[PATH_MAX], name[NAME_MAX + 1];
  int saved = errno;
  if (resolve(dirfd, path, dir, name) == 0) record("X %s %s/%s", what, dir, name);
  errno = saved;
}

static void unmodelled_fd(const char *what, int fd)
{
  char path[PATH_MAX];
  struct stat st;
  int saved = errno;
  if (active && fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && fd_path(fd, path) == 0) {
    const char *base = strrchr(path, '/');
    if (!(base && pc_ignored_name(base + 1))) record("X %s %s", what, path);
  }
  errno = saved;
}

/* ------------------------------------------------------------ unlink */

static void before_unlink(int dirfd, const char *path)
{
  char dir[PATH_MAX], name[NAME_MAX + 1], grave[PATH_MAX + 64];
  unsigned long long ino;
  int saved = errno;
  if (resolve(dirfd, path, dir, name) == 0 && bury(dir, name, grave, sizeof grave, &ino) == 0)
    record("U %s %s %llu %s", dir, name, ino, grave);
  errno = saved;
}

int unlink(const char *path)
{
  if (!real_unlink) pc_init();
  pthread_rwlock_rdlock(&ns_lock);
  before_unlink(AT_FDCWD, path);
  int rc = real_unlink(path);
  pthread_rwlock_unlock(&ns_lock);
  if (rc == 0) maybe_cut(1);
  return rc;
}

/* glibc's remove() unlinks through an internal call that no interposed
** unlink() sees. */
int remove(const char *path)
{
  if (!real_remove) pc_init();
  struct stat st;
  pthread_rwlock_rdlock(&ns_lock);
  if (lstat(path, &st) == 0 && !S_ISDIR(st.st_mode)) before_unlink(AT_FDCWD, path);
  int rc = real_remove(path);
  pthread_rwlock_unlock(&ns_lock);
  if (rc == 0) maybe_cut(1);
  return rc;
}

int unlinkat(int dirfd, const char *path, int flags)
{
  if (!real_unlinkat) pc_init();
  pthread_rwlock_rdlock(&ns_lock);
  if (!(flags & AT_REMOVEDIR)) before_unlink(dirfd, path);
  int rc = real_unlinkat(dirfd, path, flags);
  pthread_rwlock_unlock(&ns_lock);
  if (rc == 0) maybe_cut(1);
  return rc;
}

/* ------------------------------------------------------------ rename */

static void before_rename(int fd1, const char *from, int fd2, const char *to)
{
  char d1[PATH_MAX], n1[NAME_MAX + 1], d2[PATH_MAX], n2[NAME_MAX + 1], grave[PATH_MAX + 64], src[PATH_MAX * 2];
  int saved = errno;
  struct stat st;
  if (resolve(fd1, from, d1, n1) == 0 && resolve(fd2, to, d2, n2) == 0 &&
      lstat((snprintf(src, sizeof src, "%s/%s", d1, n1), src), &st) == 0 && S_ISREG(st.st_mode)) {
    unsigned long long old = 0;
    if (bury(d2, n2, grave, sizeof grave, &old) != 0) {
      old = 0;
      snprintf(grave, sizeof grave, "-");
    }
    record("R %s %s %s %s %llu %llu %s", d1, n1, d2, n2, (unsigned long long)st.st_ino, old, grave);
    lie_forget(n1, &st);
  }
  errno = saved;
}

int rename(const char *from, const char *to)
{
  if (!real_rename) pc_init();
  pthread_rwlock_rdlock(&ns_lock);
  before_rename(AT_FDCWD, from, AT_FDCWD, to);
  int rc = real_rename(from, to);
  pthread_rwlock_unlock(&ns_lock);
  if (rc == 0) maybe_cut(1);
  return rc;
}

int renameat(int fd1, const char *from, int fd2, const char *to)
{
  if (!real_renameat) pc_init();
  pthread_rwlock_rdlock(&ns_lock);
  before_rename(fd1, from, fd2, to);
  int rc = real_renameat(fd1, from, fd2, to);
  pthread_rwlock_unlock(&ns_lock);
  if (rc == 0) maybe_cut(1);
  return rc;
}

int renameat2(int fd1, const char *from, int fd2, const char *to, unsigned flags)
{
  if (!real_renameat2) pc_init();
  pthread_rwlock_rdlock(&ns_lock);
  if (!(flags & 2u)) before_rename(fd1, from, fd2, to);   /* not RENAME_EXCHANGE */
  else unmodelled("renameat2(RENAME_EXCHANGE)", fd1, from);
  int rc = real_renameat2(fd1, from, fd2, to, flags);
  pthread_rwlock_unlock(&ns_lock);
  if (rc == 0) maybe_cut(1);
  return rc;
}

/* ------------------------------------------------------------ pwrite */

/* Whether [off, off+len) of path holds only zeros (read through a descriptor
** of our own: the writer's may be write-only). */
static int all_zeros(const char *path, off64_t off, size_t len)
{
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  unsigned char buf[1 << 14];
  int zero = 1;
  while (zero && len) {
    size_t n = len < sizeof buf ? len : sizeof buf;
    ssize_t got = pread64(fd, buf, n, off);
    if (got <= 0) {
      zero = 0;
      break;
    }
    for (ssize_t i = 0; i < got && zero; i++) zero = buf[i] == 0;
    off += got;
    len -= (size_t)got;
  }
  close(fd);
  return zero;
}

/* Copy [off, off+len) of `from` into `out`, open for writing; 0 if all of
** it was copied (a short read means the file shrank under us: what was
** there is then not known, and the write is not modelled). */
static int copy_range(int from, int out, off64_t off, size_t len)
{
  unsigned char buf[1 << 14];
  for (off64_t at = 0; (size_t)at < len;) {
    size_t n = len - (size_t)at < sizeof buf ? len - (size_t)at : sizeof buf;
    ssize_t got = pread64(from, buf, n, off + at);
    if (got == 0) errno = ENODATA;
    if (got <= 0 || real_pwrite(out, buf, (size_t)got, at) != got) return -1;
    at += got;
  }
  return 0;
}

/* Save [off, off+len) of path into a new file of old/ (its name in `saved`),
** read through a descriptor of our own as all_zeros does; 0 if saved. */
static int save_old(const char *path, off64_t off, size_t len, char *saved, size_t cap)
{
  int in = open(path, O_RDONLY | O_CLOEXEC), out = -1;
  if (in < 0 || !real_pwrite) {
    if (in >= 0) close(in);
    return -1;
  }
  mkdir(old_dir, 0755);
  /* O_EXCL: a name left by an earlier process of the same pid is skipped, never reused */
  for (int tries = 0; out < 0 && tries < 8; tries++) {
    snprintf(saved, cap, "%s/%d-%u", old_dir, (int)getpid(), atomic_fetch_add(&grave_ctr, 1));
    out = open(saved, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (out < 0 && errno != EEXIST) break;
  }
  int rc = out >= 0 ? copy_range(in, out, off, len) : -1, err = errno;
  if (out >= 0 && close(out) != 0 && rc == 0) rc = -1, err = errno;
  if (rc != 0 && out >= 0) (real_unlink ? real_unlink : unlink)(saved);   /* not ours: maybe_cut would count it */
  close(in);
  errno = err;   /* the first failure's, for the X record */
  return rc;
}

/* Record a write of [off, off+len) over existing bytes of path: a Z record
** if they are all zeros, else an O record naming a copy of them. A copy that
** cannot be made leaves a write no cut could revert: an X record fails the
** run at the cut rather than let it pass on a model with a hole in it. */
static void record_overwrite(const struct stat *st, const char *path, off64_t off, size_t len)
{
  char saved[PATH_MAX + 64];
  if (all_zeros(path, off, len))
    record("Z %llu %llu %lld %zu %s", (unsigned long long)st->st_dev, (unsigned long long)st->st_ino,
           (long long)off, len, path);
  else if (save_old(path, off, len, saved, sizeof saved) == 0)
    record("O %llu %llu %lld %zu %s %s", (unsigned long long)st->st_dev, (unsigned long long)st->st_ino,
           (long long)off, len, saved, path);
  else
    record("X pwrite over old bytes that could not be saved (%s): %s", strerror(errno), path);
}

static void before_pwrite(int fd, size_t n, off64_t off)
{
  char path[PATH_MAX];
  struct stat st;
  int saved = errno;
  if (active && n && off >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && off < st.st_size &&
      fd_path(fd, path) == 0) {
    const char *base = strrchr(path, '/');
    size_t len = (size_t)(st.st_size - off) < n ? (size_t)(st.st_size - off) : n;
    if (!(base && pc_ignored_name(base + 1))) record_overwrite(&st, path, off, len);
  }
  errno = saved;
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off)
{
  if (!real_pwrite) pc_init();
  if (!real_pwrite) return errno = ENOSYS, -1;
  before_pwrite(fd, n, off);
  return real_pwrite(fd, buf, n, off);
}

ssize_t pwrite64(int fd, const void *buf, size_t n, off64_t off)
{
  if (!real_pwrite64) pc_init();
  if (!real_pwrite64) return errno = ENOSYS, -1;
  before_pwrite(fd, n, off);
  return real_pwrite64(fd, buf, n, off);
}

/* The other ways to write over existing bytes: the vectored writes, and
** write()/writev() at the descriptor's offset (not O_APPEND: an append only
** grows the file, which the sizes cover). */
static size_t iov_len(const struct iovec *iov, int n)
{
  size_t len = 0;
  for (int i = 0; iov && i < n; i++) len += iov[i].iov_len;
  return len;
}

static void before_write_at_offset(int fd, size_t n)
{
  int saved = errno;
  int fl = active && n ? fcntl(fd, F_GETFL) : -1;
  off64_t off = fl >= 0 && !(fl & O_APPEND) ? lseek64(fd, 0, SEEK_CUR) : -1;
  errno = saved;
  if (off >= 0) before_pwrite(fd, n, off);
}

ssize_t write(int fd, const void *buf, size_t n)
{
  if (!real_write) pc_init();
  if (!real_write) return errno = ENOSYS, -1;
  before_write_at_offset(fd, n);
  return real_write(fd, buf, n);
}

ssize_t writev(int fd, const struct iovec *iov, int cnt)
{
  if (!real_writev) pc_init();
  if (!real_writev) return errno = ENOSYS, -1;
  before_write_at_offset(fd, iov_len(iov, cnt));
  return real_writev(fd, iov, cnt);
}

ssize_t pwritev(int fd, const struct iovec *iov, int cnt, off_t off)
{
  if (!real_pwritev) pc_init();
  if (!real_pwritev) return errno = ENOSYS, -1;
  before_pwrite(fd, iov_len(iov, cnt), off);
  return real_pwritev(fd, iov, cnt, off);
}

ssize_t pwritev64(int fd, const struct iovec *iov, int cnt, off64_t off)
{
  if (!real_pwritev64) pc_init();
  if (!real_pwritev64) return errno = ENOSYS, -1;
  before_pwrite(fd, iov_len(iov, cnt), off);
  return real_pwritev64(fd, iov, cnt, off);
}

ssize_t pwritev2(int fd, const struct iovec *iov, int cnt, off_t off, int flags)
{
  if (!real_pwritev2) pc_init();
  if (!real_pwritev2) return errno = ENOSYS, -1;
  if (off == -1) before_write_at_offset(fd, iov_len(iov, cnt));
  else before_pwrite(fd, iov_len(iov, cnt), off);
  return real_pwritev2(fd, iov, cnt, off, flags);
}

ssize_t copy_file_range(int in, off64_t *in_off, int out, off64_t *out_off, size_t n, unsigned flags)
{
  if (!real_copy_file_range) pc_init();
  if (!real_copy_file_range) return errno = ENOSYS, -1;
  if (out_off) before_pwrite(out, n, *out_off);
  else before_write_at_offset(out, n);
  return real_copy_file_range(in, in_off, out, out_off, n, flags);
}

/* What the crash state cannot undo: a hole punched in (or a range removed
** from) synced data, and stores through a shared writable mapping (no
** write call to see). */
int fallocate(int fd, int mode, off_t off, off_t len)
{
  if (!real_fallocate) pc_init();
  if (!real_fallocate) return errno = ENOSYS, -1;
  if (mode & ~FALLOC_FL_KEEP_SIZE) unmodelled_fd("fallocate", fd);
  return real_fallocate(fd, mode, off, len);
}

void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
  if (!real_mmap) pc_init();
  if (!real_mmap) return errno = ENOSYS, MAP_FAILED;
  if (fd >= 0 && (prot & PROT_WRITE) && (flags & MAP_SHARED)) unmodelled_fd("mmap(PROT_WRITE, MAP_SHARED)", fd);
  return real_mmap(addr, len, prot, flags, fd, off);
}

/* syscall(2) bypasses every wrapper above: a tracked operation made through
** it is one the crash state never hears of. */
long syscall(long nr, ...)
{
  va_list ap;
  va_start(ap, nr);
  long a[6];
  for (int i = 0; i < 6; i++) a[i] = va_arg(ap, long);
  va_end(ap);
  static long (*real_syscall)(long, ...);
  if (!real_syscall) real_syscall = (long (*)(long, ...))dlsym(RTLD_NEXT, "syscall");
  switch (nr) {
#ifdef SYS_rename
  case SYS_rename:
#endif
#ifdef SYS_unlink
  case SYS_unlink:
#endif
  case SYS_renameat: case SYS_renameat2: case SYS_unlinkat: case SYS_fsync: case SYS_fdatasync:
  case SYS_pwrite64: case SYS_pwritev: case SYS_write: case SYS_writev: case SYS_fallocate:
  case SYS_ftruncate: case SYS_sync_file_range: case SYS_copy_file_range:
    if (active) record("X syscall(%ld) %s", nr, db_dir);
    break;
  }
  return real_syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
}
