/*
** kvcheck.c — the load generator and checker of examples/kvserver-test.sh:
** it proves that every PUT sochdb-kvserver acknowledged is durable-visible.
**
**   sochdb-kvcheck load PORT FILE PROCS SECONDS   PROCS processes PUT unique
**       keys over one keep-alive connection each for SECONDS; each 2xx is
**       appended to FILE as "PROC INDEX" (one write per line)
**   sochdb-kvcheck verify-http PORT FILE          GET every key of FILE
**   sochdb-kvcheck verify-db DIR FILE             read every key of FILE
**       through sochdb_open (the server stopped), in one snapshot
**
** Keys and values are derived from (PROC, INDEX): keys hold '/', ' ', '%'
** and a 0x01 byte (percent-encoded on the wire), values are binary, some
** empty. Exit status 0 when everything matched, 1 otherwise.
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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_VAL 600

static size_t key_of(int proc, long i, char *k)
{
  return (size_t)snprintf(k, 64, "kc/%d/%ld\x01 %%", proc, i);
}

/* Pseudo-random bytes, 0..MAX_VAL-1 long (every 97th empty). */
static size_t val_of(int proc, long i, unsigned char *v)
{
  uint64_t x = 0x9e3779b97f4a7c15ull * (uint64_t)(i + 1) ^ (uint64_t)proc << 48 ^ 1;
  size_t n = i % 97 == 0 ? 0 : (size_t)(x % MAX_VAL);
  for (size_t j = 0; j < n; j++) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    v[j] = (unsigned char)x;
  }
  return n;
}

/* ------------------------------------------------------------- HTTP client */

static int connect_to(int port)
{
  struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
  if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
    perror("kvcheck: connect");
    return -1;
  }
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

static int write_all(int fd, const void *p, size_t n)
{
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w <= 0 && errno != EINTR)
      return -1;
    if (w > 0) {
      p = (const char *)p + w;
      n -= (size_t)w;
    }
  }
  return 0;
}

/* Sends METHOD /kv/<percent-encoded key> with an optional body. */
static int send_request(int fd, const char *method, const char *k, size_t kl, const void *body, size_t bl)
{
  char req[1024];
  int n = snprintf(req, sizeof req, "%s /kv/", method);
  for (size_t i = 0; i < kl; i++) {
    unsigned char c = (unsigned char)k[i];
    if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')
      req[n++] = (char)c;
    else
      n += snprintf(req + n, sizeof req - (size_t)n, "%%%02X", c);
  }
  n += snprintf(req + n, sizeof req - (size_t)n, " HTTP/1.1\r\nHost: kv\r\n");
  if (body != NULL)
    n += snprintf(req + n, sizeof req - (size_t)n, "Content-Length: %zu\r\n", bl);
  n += snprintf(req + n, sizeof req - (size_t)n, "\r\n");
  return write_all(fd, req, (size_t)n) || (bl && write_all(fd, body, bl)) ? -1 : 0;
}

/* Reads one response: returns its status, the body in body[0..*bl). */
static int read_response(int fd, char *body, size_t cap, size_t *bl)
{
  char head[4096];
  size_t n = 0;
  char *end = NULL;
  while (end == NULL) {
    ssize_t r = n < sizeof head - 1 ? read(fd, head + n, 1) : -1;   /* byte by byte: no over-read */
    if (r <= 0)
      return -1;
    n += (size_t)r;
    head[n] = '\0';
    end = strstr(head, "\r\n\r\n");
  }
  int status = atoi(head + 9);
  const char *cl = strcasestr(head, "Content-Length:");
  size_t len = cl ? strtoul(cl + 15, NULL, 10) : 0;
  if (len > cap)
    return -1;
  for (size_t got = 0; got < len;) {
    ssize_t r = read(fd, body + got, len - got);
    if (r <= 0)
      return -1;
    got += (size_t)r;
  }
  *bl = len;
  return status;
}

/* ------------------------------------------------------------- load */

static double now_s(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int load_proc(int port, int out, int proc, double seconds)
{
  int fd = connect_to(port);
  if (fd < 0)
    return 1;
  double stop = now_s() + seconds;
  long i = 0;
  for (; now_s() < stop; i++) {
    char k[64], line[64], body[64];
    unsigned char v[MAX_VAL];
    size_t kl = key_of(proc, i, k), vl = val_of(proc, i, v), bl;
    if (send_request(fd, "PUT", k, kl, v, vl) != 0)
      return 1;
    int st = read_response(fd, body, sizeof body, &bl);
    if (st != 201) {
      fprintf(stderr, "kvcheck: PUT %d/%ld answered %d (want 201)\n", proc, i, st);
      return 1;
    }
    int n = snprintf(line, sizeof line, "%d %ld\n", proc, i);
    if (write(out, line, (size_t)n) != n)
      return 1;
  }
  close(fd);
  fprintf(stderr, "kvcheck: process %d: %ld PUTs acknowledged\n", proc, i);
  return 0;
}

static int cmd_load(int port, const char *file, int procs, double seconds)
{
  int out = open(file, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0644);
  if (out < 0) {
    perror(file);
    return 1;
  }
  for (int p = 0; p < procs; p++)
    if (fork() == 0)
      _exit(load_proc(port, out, p, seconds));
  int failed = 0, status;
  while (wait(&status) > 0)
    failed |= !WIFEXITED(status) || WEXITSTATUS(status) != 0;
  close(out);
  return failed;
}

/* ------------------------------------------------------------- verify */

typedef int (*reader)(void *ctx, const char *k, size_t kl, const void **v, size_t *vl);

/* Calls read for every line of file and compares with the expected value. */
static int verify_file(const char *file, reader read_fn, void *ctx)
{
  FILE *f = fopen(file, "r");
  if (f == NULL) {
    perror(file);
    return 1;
  }
  int proc, bad = 0;
  long i, n = 0;
  while (fscanf(f, "%d %ld", &proc, &i) == 2) {
    char k[64];
    unsigned char want[MAX_VAL];
    size_t kl = key_of(proc, i, k), wl = val_of(proc, i, want), vl;
    const void *v;
    n++;
    if (read_fn(ctx, k, kl, &v, &vl) != 0 || vl != wl || memcmp(v, want, wl) != 0) {
      if (bad++ < 10)
        fprintf(stderr, "kvcheck: key %d/%ld is missing or wrong\n", proc, i);
    }
  }
  fclose(f);
  fprintf(stderr, "kvcheck: %ld acknowledged keys checked, %d missing or wrong\n", n, bad);
  return bad != 0 || n == 0;
}

typedef struct http_ctx {
  int fd;
  char body[MAX_VAL + 16];
} http_ctx;

static int http_read(void *ctx, const char *k, size_t kl, const void **v, size_t *vl)
{
  http_ctx *h = ctx;
  if (send_request(h->fd, "GET", k, kl, NULL, 0) != 0 || read_response(h->fd, h->body, sizeof h->body, vl) != 200)
    return -1;
  *v = h->body;
  return 0;
}

static int db_read(void *ctx, const char *k, size_t kl, const void **v, size_t *vl)
{
  return sochdb_get(ctx, k, kl, v, vl);
}

static int cmd_verify_http(int port, const char *file)
{
  static http_ctx h;
  if ((h.fd = connect_to(port)) < 0)
    return 1;
  int rc = verify_file(file, http_read, &h);
  close(h.fd);
  return rc;
}

static int cmd_verify_db(const char *dir, const char *file)
{
  sochdb *db;
  sochdb_txn *t;
  sochdb_options o = { .create_if_missing = -1 };
  int rc = sochdb_open(dir, &o, &db);
  if (rc == SOCHDB_OK && (rc = sochdb_txn_begin(db, SOCHDB_TXN_READONLY, &t)) != SOCHDB_OK)
    sochdb_close(db);
  if (rc != SOCHDB_OK) {
    fprintf(stderr, "kvcheck: %s: %s\n", dir, sochdb_strerror(rc));
    return 1;
  }
  int bad = verify_file(file, db_read, t);
  sochdb_commit(t, 0);
  sochdb_close(db);
  return bad;
}

int main(int argc, char **argv)
{
  if (argc == 6 && !strcmp(argv[1], "load"))
    return cmd_load(atoi(argv[2]), argv[3], atoi(argv[4]), atof(argv[5]));
  if (argc == 4 && !strcmp(argv[1], "verify-http"))
    return cmd_verify_http(atoi(argv[2]), argv[3]);
  if (argc == 4 && !strcmp(argv[1], "verify-db"))
    return cmd_verify_db(argv[2], argv[3]);
  fputs("usage: sochdb-kvcheck load PORT FILE PROCS SECONDS | verify-http PORT FILE | verify-db DIR FILE\n", stderr);
  return 2;
}
