/*
** procutil.h — test helpers over /proc and DIR/LOCK, for the suites that
** kill processes: which process is the daemon of a directory, is a process
** alive, stop one and reap it, kill every child we have. Header-only, like
** testutil.h (which it needs).
*/
#ifndef SOCHDB_TEST_PROCUTIL_H
#define SOCHDB_TEST_PROCUTIL_H

#include "testutil.h"

#include <dirent.h>
#include <sys/file.h>

/* Read /proc/PID/WHAT into buf (NUL-terminated): its length, or <= 0. */
static inline ssize_t tp_read_proc(pid_t pid, const char *what, char *buf, size_t size)
{
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/%s", (int)pid, what);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  ssize_t n = read(fd, buf, size - 1);
  close(fd);
  if (n > 0) buf[n] = 0;
  return n;
}

/* The parent pid of pid from /proc (0 if it is gone). */
static inline pid_t tp_ppid_of(pid_t pid)
{
  char buf[1024];
  if (tp_read_proc(pid, "stat", buf, sizeof buf) <= 0) return 0;
  const char *p = strrchr(buf, ')');   /* comm may hold spaces and parentheses */
  char state;
  int ppid;
  if (!p || sscanf(p + 1, " %c %d", &state, &ppid) != 2) return 0;
  return (pid_t)ppid;
}

/* pid's state letter from /proc (R, S, T, Z, ...), 0 if it is gone. */
static inline char tp_proc_state(pid_t pid)
{
  char buf[1024];
  if (tp_read_proc(pid, "stat", buf, sizeof buf) <= 0) return 0;
  const char *p = strrchr(buf, ')');   /* comm may hold spaces and parentheses */
  char state = 0;
  if (!p || sscanf(p + 1, " %c", &state) != 1) return 0;
  return state;
}

/* 1 if pid is alive and not a zombie. */
static inline int tp_alive(pid_t pid)
{
  char state = tp_proc_state(pid);
  return state && state != 'Z' && state != 'X';
}

/* Is pid a sochdbd serving dir (argv = sochdbd ... dir)? Zombies have no cmdline. */
static inline int tp_is_daemon_of(pid_t pid, const char *dir)
{
  char buf[8192];
  ssize_t n = tp_read_proc(pid, "cmdline", buf, sizeof buf);
  if (n <= 0) return 0;
  const char *base = strrchr(buf, '/');
  base = base ? base + 1 : buf;
  if (strcmp(base, "sochdbd") != 0 && strcmp(base, "sochdbd-testing") != 0) return 0;
  ssize_t end = n;
  if (buf[end - 1] == 0) end--;
  ssize_t start = end;
  while (start > 0 && buf[start - 1] != 0) start--;
  if (start == 0) return 0;                  /* no argument at all */
  buf[end] = 0;
  return strcmp(buf + start, dir) == 0;
}

/* SIGKILL every child of ours (test children, daemons re-parented to us, a
** half-spawned daemon) and reap them, until we have no child at all. 0 when
** done, -1 if children were still there after limit_ms. */
static inline int tp_kill_descendants(unsigned limit_ms)
{
  pid_t me = getpid();
  for (unsigned i = 0; i <= limit_ms; i++) {
    DIR *d = opendir("/proc");
    if (d) {
      for (struct dirent *e; (e = readdir(d));) {
        pid_t pid = (pid_t)atoi(e->d_name);
        if (pid > 0 && pid != me && tp_ppid_of(pid) == me) kill(pid, SIGKILL);
      }
      closedir(d);
    }
    int st;
    pid_t r;
    while ((r = waitpid(-1, &st, WNOHANG)) > 0) tu_forget_child(r);
    if (r < 0 && errno == ECHILD) return 0;
    tu_sleep_ms(1);
  }
  return -1;
}

/* Send sig to pid and wait (at most limit_ms) until it is gone. 0 when gone,
** with *status its wait status if it was our child (-1 if it was not); -1 on
** timeout (it is SIGKILLed then). */
static inline int tp_stop_pid(pid_t pid, int sig, unsigned limit_ms, int *status)
{
  if (status) *status = -1;
  if (pid <= 0) return -1;
  kill(pid, sig);
  for (unsigned i = 0; i <= limit_ms; i++) {
    int st;
    pid_t r = waitpid(pid, &st, WNOHANG);
    if (r == pid) {
      if (status) *status = st;
      return 0;
    }
    if (r < 0 && errno == ECHILD && !tp_alive(pid)) return 0;
    tu_sleep_ms(1);
  }
  kill(pid, SIGKILL);
  int st;
  waitpid(pid, &st, WNOHANG);
  return -1;
}

/* Does some process hold DIR/LOCK (a daemon serves dir)? */
static inline int tp_lock_held(const char *dir)
{
  char path[4300];
  snprintf(path, sizeof path, "%s/LOCK", dir);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  int held = flock(fd, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK;
  close(fd);   /* drops our shared lock if we got it */
  return held;
}

/* The pid of the daemon serving dir: > 0 when DIR/LOCK is held and names a
** live sochdbd of dir; 0 when nobody holds the lock; -1 when it is held but
** the pid is not (yet) readable or valid. */
static inline pid_t tp_daemon_pid(const char *dir)
{
  if (!tp_lock_held(dir)) return 0;
  char path[4300], buf[32];
  snprintf(path, sizeof path, "%s/LOCK", dir);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return -1;
  buf[n] = 0;
  char *end;
  long pid = strtol(buf, &end, 10);
  if (end == buf || *end != '\n' || pid <= 0) return -1;
  return tp_is_daemon_of((pid_t)pid, dir) && tp_alive((pid_t)pid) ? (pid_t)pid : -1;
}

/* Wait (limit_ms) for a daemon of dir other than not_pid. Its pid, or <= 0. */
static inline pid_t tp_wait_daemon(const char *dir, unsigned limit_ms, pid_t not_pid)
{
  pid_t pid = 0;
  for (unsigned i = 0; i <= limit_ms; i++) {
    pid = tp_daemon_pid(dir);
    if (pid > 0 && pid != not_pid) return pid;
    tu_sleep_ms(1);
  }
  return pid > 0 ? -1 : pid;
}

#endif
