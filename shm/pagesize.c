/*
** pagesize.c — whether the region's file gets 2 MiB pages: the tmpfs mount
** that holds it (from /proc/self/mountinfo) and the system-wide override
** (/sys/kernel/mm/transparent_hugepage/shmem_enabled). See pagesize.h.
*/
#include "pagesize.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* mountinfo writes a space, tab, newline or backslash in a path as \ooo. */
static void unescape_octal(char *s)
{
  char *out = s;
  for (const char *in = s; *in; out++) {
    if (in[0] == '\\' && in[1] >= '0' && in[1] <= '3' && in[2] >= '0' && in[2] <= '7' && in[3] >= '0' &&
        in[3] <= '7') {
      *out = (char)((in[1] - '0') * 64 + (in[2] - '0') * 8 + (in[3] - '0'));
      in += 4;
    } else {
      *out = *in++;
    }
  }
  *out = '\0';
}

/* Is mount point mnt the directory dir or above it? */
static int mount_covers(const char *mnt, const char *dir)
{
  size_t n = strlen(mnt);
  if (strncmp(mnt, dir, n) != 0)
    return 0;
  return n == 1 || dir[n] == '\0' || dir[n] == '/';   /* "/" covers all; "/dev/shm" not "/dev/shmx" */
}

struct mount_seen {
  char point[PATH_MAX];
  char fstype[64];
  char options[512];   /* the file system's own (super block) options */
};

/* Parse one mountinfo line: "id parent maj:min root point opts [tags] - type source superopts". */
static int parse_mount(char *line, struct mount_seen *m)
{
  char *save = NULL, *point = NULL;
  int field = 0;
  for (char *t = strtok_r(line, " \n", &save); t; t = strtok_r(NULL, " \n", &save), field++) {
    if (field == 4)
      point = t;
    if (field > 5 && strcmp(t, "-") == 0) {
      const char *type = strtok_r(NULL, " \n", &save);
      const char *source = strtok_r(NULL, " \n", &save);
      const char *options = strtok_r(NULL, " \n", &save);
      if (!point || !type || !source || !options)
        return 0;
      snprintf(m->point, sizeof m->point, "%s", point);
      unescape_octal(m->point);
      snprintf(m->fstype, sizeof m->fstype, "%s", type);
      snprintf(m->options, sizeof m->options, "%s", options);
      return 1;
    }
  }
  return 0;
}

/* The mount that holds dir: the longest covering mount point, the last of
** equals (a later mount hides an earlier one on the same point). */
static int find_mount(const char *dir, struct mount_seen *found)
{
  FILE *f = fopen("/proc/self/mountinfo", "re");
  if (!f)
    return 0;
  char line[2 * PATH_MAX];
  size_t best = 0;
  int any = 0;
  struct mount_seen m;
  while (fgets(line, sizeof line, f)) {
    if (!parse_mount(line, &m) || !mount_covers(m.point, dir))
      continue;
    size_t len = strlen(m.point);
    if (!any || len >= best) {
      *found = m;
      best = len;
      any = 1;
    }
  }
  fclose(f);
  return any;
}

/* The bracketed word of shmem_enabled ("never", "force", ...), or "". */
static void shmem_policy(char *out, size_t n)
{
  out[0] = '\0';
  FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/shmem_enabled", "re");
  if (!f)
    return;
  char text[256];
  if (fgets(text, sizeof text, f)) {
    char *open = strchr(text, '['), *close = open ? strchr(open, ']') : NULL;
    if (open && close)
      snprintf(out, n, "%.*s", (int)(close - open - 1), open + 1);
  }
  fclose(f);
}

/* The value of option `name=` in a comma-separated list, or NULL. */
static const char *option_value(const char *options, const char *name, char *out, size_t n)
{
  size_t len = strlen(name);
  for (const char *p = options; p && *p; p = strchr(p, ',') ? strchr(p, ',') + 1 : NULL) {
    if (strncmp(p, name, len) == 0 && p[len] == '=') {
      size_t v = strcspn(p + len + 1, ",");
      snprintf(out, n, "%.*s", (int)v, p + len + 1);
      return out;
    }
  }
  return NULL;
}

uint64_t shm_page_bytes(const char *path, char *why, size_t n)
{
  char scratch[64], dir[PATH_MAX], resolved[PATH_MAX];
  if (!why) {
    why = scratch;
    n = sizeof scratch;
  }
  snprintf(dir, sizeof dir, "%s", path);
  char *slash = strrchr(dir, '/');
  if (slash)
    *(slash == dir ? slash + 1 : slash) = '\0';   /* "/x" lives in "/" */
  else
    snprintf(dir, sizeof dir, ".");
  struct mount_seen m;
  if (!realpath(dir, resolved) || !find_mount(resolved, &m)) {
    snprintf(why, n, "the mount of %s is unknown", dir);
    return 4096;
  }
  if (strcmp(m.fstype, "tmpfs") != 0) {
    snprintf(why, n, "%s %s, not a tmpfs", m.fstype, m.point);
    return 4096;
  }
  char policy[32], huge[32];
  shmem_policy(policy, sizeof policy);
  if (!option_value(m.options, "huge", huge, sizeof huge))
    snprintf(huge, sizeof huge, "never");
  int forced = strcmp(policy, "force") == 0, denied = strcmp(policy, "deny") == 0;
  snprintf(why, n, "tmpfs %s, huge=%s%s", m.point, huge,
           forced ? ", overridden by shmem_enabled=force" : denied ? ", overridden by shmem_enabled=deny" : "");
  if (forced || denied)   /* the system's word for every tmpfs, whatever its mount says */
    return forced ? SHM_HUGE_PAGE_BYTES : 4096;
  return strcmp(huge, "always") == 0 || strcmp(huge, "within_size") == 0 ? SHM_HUGE_PAGE_BYTES : 4096;
}
