/*
** cli.h — what the parts of the `sochdb` tool share: exit statuses, error
** and escaped output, and the progress bar (all defined in tools/sochdb.c),
** and the entry points of the columnar table commands (tools/sochdb_table.c)
** and of `sochdb destroy` (tools/sochdb_destroy.c).
*/
#ifndef SOCHDB_CLI_H
#define SOCHDB_CLI_H

#include <stdint.h>
#include <stdio.h>
#include <time.h>

/* Scripts depend on these, so they are part of the interface. */
enum { EXIT_OK = 0, EXIT_NOT_FOUND = 1, EXIT_USAGE = 2, EXIT_DB_ERROR = 3 };

/* "sochdb: WHAT: strerror(rc) (last error)" on stderr; returns EXIT_DB_ERROR. */
int  db_error(const char *what, int rc);
/* Bytes as one line of text: \\, \t, \n and non-printable bytes escaped. */
void put_escaped(FILE *f, const void *bytes, size_t n);
/* Bytes as a JSON string on stdout (bytes >= 0x80 as \u0080..\u00ff). */
void put_json_string(const void *bytes, size_t n);
/* Open the database in dir (create_if_missing as in sochdb_options: 1 or
** -1); on failure says why on stderr ("no database at DIR", or db_error's
** line) and returns EXIT_DB_ERROR, else EXIT_OK. */
struct sochdb;
int  cli_open_db(const char *dir, int create_if_missing, struct sochdb **db);
/* An option's number: decimal only, the whole string, within [min, max] (a
** typo must not turn into a silent default); else says so on stderr, with
** `want` describing the range, and returns EXIT_USAGE. */
int  cli_parse_number(const char *option, const char *s, unsigned long long min, unsigned long long max,
                      const char *want, unsigned long long *out);
/* Seconds of CLOCK_MONOTONIC since t0. */
double cli_seconds_since(const struct timespec *t0);

/* Flush stdout: a write error turns a success into EXIT_DB_ERROR. */
int  finish_stdout(int status);

/* A progress bar on stderr for a person at a terminal: redrawn at most every
** 100 ms, and only when its figure or its label changed. */
typedef struct progress_bar {
  int enabled;                  /* stderr is a terminal */
  int shown;
  unsigned last_permille;
  const char *last_label;
  struct timespec last_draw;
} progress_bar;
void bar_clear(progress_bar *b);
/* label [####....]  42.0%  tail */
void bar_draw(progress_bar *b, const char *label, uint64_t done, uint64_t total, const char *tail);

/* `sochdb destroy DIR` (tools/sochdb_destroy.c): an exit status. */
int  cli_destroy(const char *dir, int json);
/* Stop DIR's daemon and remove its shared region, unless another process
** is attached (tools/sochdb_destroy.c): DIR is then a closed set of files,
** safe to copy, and leaves no pages in /dev/shm. An exit status. */
int  cli_release_db(const char *dir);

/* `sochdb [--json] table SUBCOMMAND ...`: argv[0] is "table". */
int  table_main(int argc, char **argv, int json);

#endif
