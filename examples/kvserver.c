/*
** kvserver.c — a small pre-forking HTTP/1.1 key-value service on sochdb (or,
** for comparison, on SQLite when built with SOCHDB_KVSERVER_SQLITE).
**
**   sochdb-kvserver --dir DIR [--port P] [--bind ADDR] [--workers N]
**                   [--sync | --async] [--backend sochdb|sqlite] [--port-file F]
**
**   GET    /kv/KEY   200 + the value, 404 if absent
**   PUT    /kv/KEY   the body is the value (Content-Length required, else 411):
**                    201 created, 204 replaced
**   DELETE /kv/KEY   204 deleted, 404 if absent
**   other methods 405, other paths 404, bad requests 400, BUSY 503.
** KEY is percent-decoded, 1..4096 bytes. Keep-alive is the HTTP/1.1 default.
**
** The parent binds the listening socket, then forks N workers. Each worker
** opens its OWN database handle after fork (a sochdb handle does not survive
** fork) and serves the connections it accept()s on the shared socket with an
** epoll loop. SIGTERM or SIGINT to the parent stops the workers and reaps
** them; a worker that dies otherwise is replaced.
*/
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "sochdb.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#ifdef SOCHDB_KVSERVER_SQLITE
#include <sqlite3.h>
#endif

#define MAX_HEADER (16u * 1024u)
#define MAX_WORKERS 256
#define TXN_ATTEMPTS 20

/* ------------------------------------------------------------- options */

typedef struct config {
  const char *dir, *bind_addr, *port_file, *backend;
  int port, workers, async;
} config;

static void usage(FILE *f)
{
  fputs("usage: sochdb-kvserver --dir DIR [--port P] [--bind ADDR] [--workers N]\n"
        "                       [--sync | --async] [--backend sochdb|sqlite] [--port-file F]\n"
        "  --dir DIR        the database directory (sqlite: DIR/kv.sqlite)\n"
        "  --port P         TCP port (default 8080; 0 = any free port)\n"
        "  --bind ADDR      IPv4 address to listen on (default 127.0.0.1)\n"
        "  --workers N      worker processes (default: number of cores)\n"
        "  --sync/--async   commit durability (default --sync)\n"
        "  --backend B      sochdb (default) or sqlite"
#ifndef SOCHDB_KVSERVER_SQLITE
        " (not built in)"
#endif
        "\n  --port-file F    write the bound port to F once listening\n", f);
}

/* A whole decimal number, or -1. */
static int number(const char *s)
{
  char *end;
  long v = strtol(s, &end, 10);
  return *s >= '0' && *s <= '9' && *end == '\0' && v <= 1000000 ? (int)v : -1;
}

static int parse_args(int argc, char **argv, config *c)
{
  long cores = sysconf(_SC_NPROCESSORS_ONLN);
  *c = (config){ NULL, "127.0.0.1", NULL, "sochdb", 8080, cores > 0 ? (int)cores : 1, 0 };
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--sync")) c->async = 0;
    else if (!strcmp(a, "--async")) c->async = 1;
    else if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(stdout); exit(0); }
    else if (v == NULL) { fprintf(stderr, "kvserver: %s needs a value\n", a); return -1; }
    else if (!strcmp(a, "--dir")) c->dir = argv[++i];
    else if (!strcmp(a, "--bind")) c->bind_addr = argv[++i];
    else if (!strcmp(a, "--port-file")) c->port_file = argv[++i];
    else if (!strcmp(a, "--backend")) c->backend = argv[++i];
    else if (!strcmp(a, "--port")) c->port = number(argv[++i]);
    else if (!strcmp(a, "--workers")) c->workers = number(argv[++i]);
    else { fprintf(stderr, "kvserver: unknown option %s\n", a); return -1; }
  }
  if (c->dir == NULL || c->port < 0 || c->port > 65535 || c->workers < 1 || c->workers > MAX_WORKERS) {
    usage(stderr);
    return -1;
  }
  return 0;
}

/* ------------------------------------------------------------- buffers */

typedef struct buf {
  char *p;
  size_t len, cap;
} buf;

static int buf_reserve(buf *b, size_t more)
{
  if (b->len + more <= b->cap)
    return 0;
  size_t cap = b->cap ? b->cap : 4096;
  while (cap < b->len + more)
    cap *= 2;
  char *p = realloc(b->p, cap);
  if (p == NULL)
    return -1;
  b->p = p;
  b->cap = cap;
  return 0;
}

static int buf_add(buf *b, const void *data, size_t n)
{
  if (buf_reserve(b, n) != 0)
    return -1;
  if (n)
    memcpy(b->p + b->len, data, n);
  b->len += n;
  return 0;
}

static void buf_consume(buf *b, size_t n)
{
  memmove(b->p, b->p + n, b->len - n);
  b->len -= n;
}

/* ------------------------------------------------------------- backends */

enum { BK_OK, BK_CREATED, BK_NOTFOUND, BK_INVALID, BK_BUSY, BK_ERROR };

typedef struct backend {
  void *h;
  int async;
  /* get appends the value to out */
  int (*get)(struct backend *b, const char *k, size_t kl, buf *out);
  int (*put)(struct backend *b, const char *k, size_t kl, const char *v, size_t vl);  /* BK_CREATED or BK_OK */
  int (*del)(struct backend *b, const char *k, size_t kl);
  void (*close)(struct backend *b);
} backend;

static int sdb_status(int rc)
{
  switch (rc) {
  case SOCHDB_OK: return BK_OK;
  case SOCHDB_NOTFOUND: return BK_NOTFOUND;
  case SOCHDB_INVALID: return BK_INVALID;
  case SOCHDB_BUSY: case SOCHDB_CONFLICT: return BK_BUSY;
  default: return BK_ERROR;
  }
}

static int sdb_get(backend *b, const char *k, size_t kl, buf *out)
{
  sochdb_txn *t;
  int rc = sochdb_txn_begin(b->h, SOCHDB_TXN_READONLY, &t);
  if (rc != SOCHDB_OK)
    return sdb_status(rc);
  const void *v;
  size_t vl;
  rc = sochdb_get(t, k, kl, &v, &vl);
  if (rc == SOCHDB_OK && buf_add(out, v, vl) != 0)
    rc = SOCHDB_NOMEM;
  sochdb_commit(t, 0);
  return sdb_status(rc);
}

/* One write: read whether the key exists (for 201 vs 204 / 404), then write
** it, in one transaction; a conflict changed nothing, so it is retried. */
static int sdb_write(backend *b, const char *k, size_t kl, const char *v, size_t vl, int is_put)
{
  for (int attempt = 0; attempt < TXN_ATTEMPTS; attempt++) {
    sochdb_txn *t;
    int rc = sochdb_txn_begin(b->h, 0, &t);
    if (rc != SOCHDB_OK)
      return sdb_status(rc);
    const void *old;
    size_t oldlen;
    int existed = sochdb_get(t, k, kl, &old, &oldlen);
    if (existed != SOCHDB_OK && existed != SOCHDB_NOTFOUND) {
      sochdb_abort(t);
      return sdb_status(existed);
    }
    if (!is_put && existed == SOCHDB_NOTFOUND) {
      sochdb_commit(t, 0);
      return BK_NOTFOUND;
    }
    rc = is_put ? sochdb_put(t, k, kl, v, vl) : sochdb_delete(t, k, kl);
    if (rc != SOCHDB_OK) {
      sochdb_abort(t);
      return sdb_status(rc);
    }
    rc = sochdb_commit(t, b->async ? SOCHDB_ASYNC : SOCHDB_SYNC);
    if (rc == SOCHDB_OK)
      return existed == SOCHDB_NOTFOUND ? BK_CREATED : BK_OK;
    if (rc != SOCHDB_CONFLICT)
      return sdb_status(rc);
  }
  return BK_BUSY;
}

static int sdb_put(backend *b, const char *k, size_t kl, const char *v, size_t vl)
{
  return sdb_write(b, k, kl, v, vl, 1);
}

static int sdb_del(backend *b, const char *k, size_t kl)
{
  return sdb_write(b, k, kl, NULL, 0, 0);
}

static void sdb_close(backend *b)
{
  sochdb_close(b->h);
}

static int sdb_open(backend *b, const char *dir)
{
  sochdb *db;
  int rc = sochdb_open(dir, NULL, &db);
  if (rc != SOCHDB_OK) {
    fprintf(stderr, "kvserver: cannot open %s: %s (%s)\n", dir, sochdb_strerror(rc), sochdb_last_error());
    return -1;
  }
  b->h = db;
  b->get = sdb_get;
  b->put = sdb_put;
  b->del = sdb_del;
  b->close = sdb_close;
  return 0;
}

#ifdef SOCHDB_KVSERVER_SQLITE
/* One connection per worker, WAL mode, statements prepared once. */
typedef struct sql {
  sqlite3 *db;
  sqlite3_stmt *get, *update, *insert, *del;
} sql;

static int sql_status(int rc)
{
  if (rc == SQLITE_OK || rc == SQLITE_DONE || rc == SQLITE_ROW)
    return BK_OK;
  return rc == SQLITE_BUSY || rc == SQLITE_LOCKED ? BK_BUSY : BK_ERROR;
}

/* Binds key (and value), steps once, resets; returns the sqlite code. */
static int sql_run(sqlite3_stmt *s, const char *k, size_t kl, const char *v, size_t vl, int with_value)
{
  sqlite3_bind_blob(s, 1, k, (int)kl, SQLITE_STATIC);
  if (with_value)
    sqlite3_bind_blob(s, 2, vl ? v : "", (int)vl, SQLITE_STATIC);
  int rc = sqlite3_step(s);
  sqlite3_reset(s);
  return rc;
}

static int sql_get(backend *b, const char *k, size_t kl, buf *out)
{
  sql *q = b->h;
  sqlite3_bind_blob(q->get, 1, k, (int)kl, SQLITE_STATIC);
  int rc = sqlite3_step(q->get), st = BK_NOTFOUND;
  if (rc == SQLITE_ROW)
    st = buf_add(out, sqlite3_column_blob(q->get, 0), (size_t)sqlite3_column_bytes(q->get, 0)) ? BK_ERROR : BK_OK;
  else if (rc != SQLITE_DONE)
    st = sql_status(rc);
  sqlite3_reset(q->get);
  return st;
}

/* UPDATE, else INSERT OR IGNORE; if another worker inserted in between, update again. */
static int sql_put(backend *b, const char *k, size_t kl, const char *v, size_t vl)
{
  sql *q = b->h;
  for (int attempt = 0; attempt < TXN_ATTEMPTS; attempt++) {
    int rc = sql_run(q->update, k, kl, v, vl, 1);
    if (rc != SQLITE_DONE)
      return sql_status(rc);
    if (sqlite3_changes(q->db) > 0)
      return BK_OK;
    rc = sql_run(q->insert, k, kl, v, vl, 1);
    if (rc != SQLITE_DONE)
      return sql_status(rc);
    if (sqlite3_changes(q->db) > 0)
      return BK_CREATED;
  }
  return BK_BUSY;
}

static int sql_del(backend *b, const char *k, size_t kl)
{
  sql *q = b->h;
  int rc = sql_run(q->del, k, kl, NULL, 0, 0);
  if (rc != SQLITE_DONE)
    return sql_status(rc);
  return sqlite3_changes(q->db) > 0 ? BK_OK : BK_NOTFOUND;
}

static void sql_close(backend *b)
{
  sql *q = b->h;
  sqlite3_finalize(q->get);
  sqlite3_finalize(q->update);
  sqlite3_finalize(q->insert);
  sqlite3_finalize(q->del);
  sqlite3_close(q->db);
  free(q);
}

static int sql_exec(sqlite3 *db, const char *stmt)
{
  char *err = NULL;
  if (sqlite3_exec(db, stmt, NULL, NULL, &err) == SQLITE_OK)
    return 0;
  fprintf(stderr, "kvserver: sqlite: %s: %s\n", stmt, err ? err : "?");
  sqlite3_free(err);
  return -1;
}

static int sql_prepare(sql *q)
{
  static const char *const text[4] = {
    "SELECT v FROM kv WHERE k = ?1", "UPDATE kv SET v = ?2 WHERE k = ?1",
    "INSERT OR IGNORE INTO kv(k, v) VALUES (?1, ?2)", "DELETE FROM kv WHERE k = ?1" };
  sqlite3_stmt **s[4] = { &q->get, &q->update, &q->insert, &q->del };
  for (int i = 0; i < 4; i++)
    if (sqlite3_prepare_v2(q->db, text[i], -1, s[i], NULL) != SQLITE_OK) {
      fprintf(stderr, "kvserver: sqlite: %s: %s\n", text[i], sqlite3_errmsg(q->db));
      return -1;
    }
  return 0;
}

static int sql_open(backend *b, const char *dir)
{
  char path[4096];
  snprintf(path, sizeof path, "%s/kv.sqlite", dir);
  if (mkdir(dir, 0700) != 0 && errno != EEXIST) {   /* as sochdb_open creates its directory */
    fprintf(stderr, "kvserver: cannot create %s: %s\n", dir, strerror(errno));
    return -1;
  }
  sql *q = calloc(1, sizeof *q);
  if (q == NULL || sqlite3_open(path, &q->db) != SQLITE_OK) {
    fprintf(stderr, "kvserver: cannot open %s\n", path);
    free(q);
    return -1;
  }
  b->h = q;
  b->get = sql_get;
  b->put = sql_put;
  b->del = sql_del;
  b->close = sql_close;
  sqlite3_busy_timeout(q->db, 10000);
  if (sql_exec(q->db, "PRAGMA journal_mode=WAL") ||
      sql_exec(q->db, b->async ? "PRAGMA synchronous=NORMAL" : "PRAGMA synchronous=FULL") ||
      sql_exec(q->db, "CREATE TABLE IF NOT EXISTS kv(k BLOB PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID") ||
      sql_prepare(q)) {
    sql_close(b);
    return -1;
  }
  return 0;
}
#endif

static int backend_open(backend *b, const config *c)
{
  memset(b, 0, sizeof *b);
  b->async = c->async;
  if (!strcmp(c->backend, "sochdb"))
    return sdb_open(b, c->dir);
#ifdef SOCHDB_KVSERVER_SQLITE
  if (!strcmp(c->backend, "sqlite"))
    return sql_open(b, c->dir);
#endif
  fprintf(stderr, "kvserver: unknown or not built-in backend '%s'\n", c->backend);
  return -1;
}

/* ------------------------------------------------------------- HTTP */

typedef struct request {
  char method[8];
  char key[SOCHDB_MAX_KEY];
  size_t klen;
  int bad_path;                 /* 1: not /kv/..., 2: a bad key */
  int keep_alive;
  long long content_length;     /* -1 = none */
  int chunked;
  size_t header_len;
} request;

static int hexval(int c)
{
  if (c >= '0' && c <= '9') return c - '0';
  c |= 0x20;
  return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Percent-decodes the target after "/kv/" into r->key. */
static void parse_target(request *r, const char *t, size_t n)
{
  r->bad_path = 1;                  /* 404: not under /kv/ */
  if (n < 4 || memcmp(t, "/kv/", 4) != 0)
    return;
  r->bad_path = 2;                  /* 400: a bad key */
  r->klen = 0;
  for (size_t i = 4; i < n; i++) {
    int c = (unsigned char)t[i];
    if (c == '%') {
      int hi = i + 2 < n ? hexval(t[i + 1]) : -1, lo = i + 2 < n ? hexval(t[i + 2]) : -1;
      if (hi < 0 || lo < 0)
        return;
      c = hi * 16 + lo;
      i += 2;
    }
    if (r->klen == SOCHDB_MAX_KEY)
      return;
    r->key[r->klen++] = (char)c;
  }
  r->bad_path = r->klen == 0 ? 2 : 0;
}

static int header_is(const char *line, size_t n, const char *name, const char **value)
{
  size_t nl = strlen(name);
  if (n <= nl || strncasecmp(line, name, nl) != 0 || line[nl] != ':')
    return 0;
  *value = line + nl + 1;
  while (**value == ' ' || **value == '\t')
    (*value)++;
  return 1;
}

static void parse_header(request *r, const char *line, size_t n)
{
  const char *v;
  if (header_is(line, n, "Content-Length", &v))
    r->content_length = strtoll(v, NULL, 10);
  else if (header_is(line, n, "Connection", &v))
    r->keep_alive = strncasecmp(v, "close", 5) != 0 && (r->keep_alive || strncasecmp(v, "keep-alive", 10) == 0);
  else if (header_is(line, n, "Transfer-Encoding", &v))
    r->chunked = 1;
}

/* Parses the head in p[0..len) if complete: 1 done, 0 need more, -1 malformed. */
static int parse_head(request *r, const char *p, size_t len)
{
  const char *end = memmem(p, len, "\r\n\r\n", 4);
  if (end == NULL)
    return len > MAX_HEADER ? -1 : 0;
  memset(r, 0, sizeof *r);
  r->content_length = -1;
  r->header_len = (size_t)(end - p) + 4;
  const char *eol = memmem(p, r->header_len, "\r\n", 2);
  const char *sp1 = memchr(p, ' ', (size_t)(eol - p));
  const char *sp2 = sp1 ? memchr(sp1 + 1, ' ', (size_t)(eol - sp1 - 1)) : NULL;
  if (sp2 == NULL || sp1 - p >= (long)sizeof r->method || eol - sp2 < 9 || memcmp(sp2 + 1, "HTTP/1.", 7))
    return -1;
  memcpy(r->method, p, (size_t)(sp1 - p));
  r->keep_alive = sp2[8] == '1';          /* HTTP/1.1 keeps alive by default */
  parse_target(r, sp1 + 1, (size_t)(sp2 - sp1 - 1));
  for (const char *line = eol + 2; line < end;) {
    const char *next = memmem(line, (size_t)(end + 2 - line), "\r\n", 2);
    parse_header(r, line, (size_t)(next - line));
    line = next + 2;
  }
  return r->content_length < -1 || r->content_length > SOCHDB_MAX_VALUE ? -1 : 1;
}

static const char *reason(int code)
{
  switch (code) {
  case 200: return "OK";
  case 201: return "Created";
  case 204: return "No Content";
  case 400: return "Bad Request";
  case 404: return "Not Found";
  case 405: return "Method Not Allowed";
  case 411: return "Length Required";
  case 503: return "Service Unavailable";
  default: return "Internal Server Error";
  }
}

/* Appends a whole response; body may be NULL (no body). */
static int respond(buf *out, int code, const void *body, size_t blen, int keep_alive)
{
  char head[256];
  int n = snprintf(head, sizeof head, "HTTP/1.1 %d %s\r\n%s%s", code, reason(code),
                   keep_alive ? "" : "Connection: close\r\n", code == 405 ? "Allow: GET, PUT, DELETE\r\n" : "");
  if (code != 204)
    n += snprintf(head + n, sizeof head - (size_t)n, "Content-Length: %zu\r\n", blen);
  n += snprintf(head + n, sizeof head - (size_t)n, "\r\n");
  return buf_add(out, head, (size_t)n) || buf_add(out, body, code == 204 ? 0 : blen);
}

static int status_code(int bk, int success)
{
  switch (bk) {
  case BK_OK: return success;
  case BK_CREATED: return 201;
  case BK_NOTFOUND: return 404;
  case BK_INVALID: return 400;
  case BK_BUSY: return 503;
  default: return 500;
  }
}

/* Runs one complete request (body = the PUT value) and appends its response. */
static int handle(backend *b, const request *r, const char *body, buf *out)
{
  if (r->bad_path)
    return respond(out, r->bad_path == 1 ? 404 : 400, NULL, 0, r->keep_alive);
  if (!strcmp(r->method, "GET")) {
    buf val = { 0 };
    int st = status_code(b->get(b, r->key, r->klen, &val), 200);
    int rc = respond(out, st, st == 200 ? val.p : NULL, st == 200 ? val.len : 0, r->keep_alive);
    free(val.p);
    return rc;
  }
  if (!strcmp(r->method, "PUT"))
    return respond(out, status_code(b->put(b, r->key, r->klen, body, (size_t)r->content_length), 204), NULL, 0,
                   r->keep_alive);
  if (!strcmp(r->method, "DELETE"))
    return respond(out, status_code(b->del(b, r->key, r->klen), 204), NULL, 0, r->keep_alive);
  return respond(out, 405, NULL, 0, r->keep_alive);
}

/* ------------------------------------------------------------- connections */

typedef struct conn {
  int fd;
  buf in, out;
  int closing;
} conn;

static int send_all(int fd, const char *p, size_t n)
{
  while (n > 0) {
    ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
    if (w > 0) {
      p += w;
      n -= (size_t)w;
    } else if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
      struct pollfd pfd = { fd, POLLOUT, 0 };
      if (poll(&pfd, 1, 10000) <= 0)
        return -1;
    } else {
      return -1;
    }
  }
  return 0;
}

/* Handles every complete request buffered; returns -1 to close the connection. */
static int serve_buffered(backend *b, conn *c)
{
  for (;;) {
    request r;
    int st = parse_head(&r, c->in.p, c->in.len);
    if (st == 0)
      break;
    if (st < 0 || r.chunked || (!strcmp(r.method, "PUT") && r.content_length < 0)) {
      int code = st < 0 ? 400 : 411;
      respond(&c->out, code, NULL, 0, 0);
      c->closing = 1;
      break;
    }
    size_t blen = r.content_length > 0 ? (size_t)r.content_length : 0;
    if (c->in.len < r.header_len + blen)
      break;
    if (handle(b, &r, c->in.p + r.header_len, &c->out) != 0)
      return -1;
    buf_consume(&c->in, r.header_len + blen);
    if (!r.keep_alive) {
      c->closing = 1;
      break;
    }
  }
  int rc = send_all(c->fd, c->out.p, c->out.len);
  c->out.len = 0;
  return rc != 0 || c->closing ? -1 : 0;
}

/* Reads what is there; returns -1 when the connection is done. */
static int on_readable(backend *b, conn *c)
{
  for (;;) {
    if (buf_reserve(&c->in, 65536) != 0)
      return -1;
    ssize_t n = recv(c->fd, c->in.p + c->in.len, c->in.cap - c->in.len, 0);
    if (n > 0) {
      c->in.len += (size_t)n;
      continue;
    }
    if (n == 0)
      return -1;
    if (errno == EINTR)
      continue;
    if (errno == EAGAIN)
      return serve_buffered(b, c);
    return -1;
  }
}

static void conn_free(conn *c)
{
  close(c->fd);
  free(c->in.p);
  free(c->out.p);
  free(c);
}

/* ------------------------------------------------------------- worker */

static volatile sig_atomic_t stopping;

static void on_stop(int sig)
{
  (void)sig;
  stopping = 1;
}

static void accept_all(int lfd, int ep)
{
  for (;;) {
    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0)
      return;                   /* EAGAIN: another worker took it, or none left */
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    conn *c = calloc(1, sizeof *c);
    struct epoll_event ev = { .events = EPOLLIN | EPOLLRDHUP, .data.ptr = c };
    if (c == NULL || (c->fd = fd, epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0)) {
      close(fd);
      free(c);
    }
  }
}

/* SIGTERM/SIGINT stay blocked except inside epoll_pwait, so a request in
** progress always completes; then the worker closes its handle and exits. */
static int worker_loop(int lfd, backend *b, const sigset_t *wait_mask)
{
  int ep = epoll_create1(EPOLL_CLOEXEC);
  struct epoll_event lev = { .events = EPOLLIN | EPOLLEXCLUSIVE, .data.ptr = NULL };
  if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &lev) != 0)
    return 1;
  struct epoll_event evs[64];
  while (!stopping) {
    int n = epoll_pwait(ep, evs, 64, -1, wait_mask);
    for (int i = 0; i < n; i++) {
      conn *c = evs[i].data.ptr;
      if (c == NULL)
        accept_all(lfd, ep);
      else if (on_readable(b, c) != 0)
        conn_free(c);           /* close() removes it from the epoll set */
    }
  }
  close(ep);
  return 0;
}

static void worker_main(int lfd, const config *c)
{
  struct sigaction sa = { .sa_handler = on_stop };
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  signal(SIGCHLD, SIG_DFL);
  sigset_t wait_mask;
  sigprocmask(SIG_SETMASK, NULL, &wait_mask);   /* inherited: TERM, INT, CHLD blocked */
  sigdelset(&wait_mask, SIGTERM);
  sigdelset(&wait_mask, SIGINT);
  backend b;
  if (backend_open(&b, c) != 0)
    _exit(3);
  int rc = worker_loop(lfd, &b, &wait_mask);
  b.close(&b);
  _exit(rc);
}

/* ------------------------------------------------------------- parent */

static int listen_socket(const config *c, int *port)
{
  struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)c->port) };
  if (inet_pton(AF_INET, c->bind_addr, &sa.sin_addr) != 1) {
    fprintf(stderr, "kvserver: bad address %s\n", c->bind_addr);
    return -1;
  }
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1;
  socklen_t len = sizeof sa;
  if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
      bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(fd, 1024) != 0 ||
      getsockname(fd, (struct sockaddr *)&sa, &len) != 0) {
    fprintf(stderr, "kvserver: cannot listen on %s:%d: %s\n", c->bind_addr, c->port, strerror(errno));
    if (fd >= 0)
      close(fd);
    return -1;
  }
  *port = ntohs(sa.sin_port);
  return fd;
}

/* Written to a temporary name and renamed, so a reader never sees half. */
static int write_port_file(const char *path, int port)
{
  char tmp[4200];
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  FILE *f = fopen(tmp, "w");
  if (f == NULL || fprintf(f, "%d\n", port) < 0 || fclose(f) != 0 || rename(tmp, path) != 0) {
    fprintf(stderr, "kvserver: cannot write %s: %s\n", path, strerror(errno));
    return -1;
  }
  return 0;
}

static pid_t spawn_worker(int lfd, const config *c)
{
  pid_t pid = fork();
  if (pid == 0)
    worker_main(lfd, c);
  if (pid < 0)
    fprintf(stderr, "kvserver: fork: %s\n", strerror(errno));
  return pid;
}

static int slot_of(const pid_t *pids, int n, pid_t pid)
{
  for (int i = 0; i < n; i++)
    if (pids[i] == pid)
      return i;
  return -1;
}

/* Reaps the workers that exited; replaces them unless stopping. */
static void reap(int lfd, const config *c, pid_t *pids, int *alive)
{
  int status;
  pid_t pid;
  while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
    int i = slot_of(pids, c->workers, pid);
    if (i < 0)
      continue;
    pids[i] = 0;
    (*alive)--;
    if (stopping)
      continue;
    fprintf(stderr, "kvserver: worker %d exited (status 0x%x); starting another\n", (int)pid, status);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 3)
      continue;                 /* could not open the database: restarting would spin */
    if ((pids[i] = spawn_worker(lfd, c)) > 0)
      (*alive)++;
  }
}

static void stop_workers(pid_t *pids, int n)
{
  for (int i = 0; i < n; i++)
    if (pids[i] > 0)
      kill(pids[i], SIGTERM);
  for (int i = 0; i < n; i++)
    if (pids[i] > 0)
      waitpid(pids[i], NULL, 0);
}

/* Checks that the database opens before forking, so a bad DIR fails once. */
static int check_backend(const config *c)
{
  backend b;
  if (backend_open(&b, c) != 0)
    return -1;
  b.close(&b);
  return 0;
}

int main(int argc, char **argv)
{
  config c;
  if (parse_args(argc, argv, &c) != 0)
    return 2;
  int port, lfd = listen_socket(&c, &port);
  if (lfd < 0 || check_backend(&c) != 0)
    return 1;
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGCHLD);
  sigprocmask(SIG_BLOCK, &set, NULL);
  pid_t pids[MAX_WORKERS] = { 0 };
  int alive = 0;
  for (int i = 0; i < c.workers; i++)
    if ((pids[i] = spawn_worker(lfd, &c)) > 0)
      alive++;
  fprintf(stderr, "kvserver: listening on %s:%d, %d workers, backend %s, %s commits\n", c.bind_addr, port, alive,
          c.backend, c.async ? "async" : "sync");
  if (c.port_file && write_port_file(c.port_file, port) != 0)
    stopping = 1;
  while (!stopping && alive > 0) {
    int sig;
    sigwait(&set, &sig);
    if (sig == SIGCHLD)
      reap(lfd, &c, pids, &alive);
    else
      stopping = 1;
  }
  stop_workers(pids, c.workers);
  close(lfd);
  fprintf(stderr, "kvserver: stopped\n");
  return 0;
}
