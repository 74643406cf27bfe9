/*
** test_pagesize.c — shm/pagesize.c: which page size the region's file gets,
** read from the mount that holds its directory.
**
** The tmpfs tests mount their own (root; skipped elsewhere) and skip where
** the system overrides every mount (shmem_enabled force or deny). Whether
** the engine really gets 2 MiB pages there is test_arena.c's
** a_region_in_2_MiB_pages_keeps_every_commit.
*/
#include <criterion/criterion.h>

#include "pagesize.h"
#include "testutil.h"

static void skip_if_the_system_overrides_mounts(void)
{
  char text[256] = { 0 };
  FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/shmem_enabled", "re");
  if (f) {
    if (!fgets(text, sizeof text, f))
      text[0] = '\0';
    fclose(f);
  }
  if (strstr(text, "[force]") || strstr(text, "[deny]"))
    cr_skip_test("shmem_enabled overrides every tmpfs here: %s", text);
}

/* shm_page_bytes of a file in mnt, asserting that why names the mount. */
static uint64_t page_bytes_in(const char *mnt, const char *file, const char *want_in_why)
{
  char path[PATH_MAX], why[192];
  snprintf(path, sizeof path, "%s/%s", mnt, file);
  uint64_t bytes = shm_page_bytes(path, why, sizeof why);
  cr_assert_not_null(strstr(why, want_in_why), "why for %s: \"%s\", lacks \"%s\"", path, why, want_in_why);
  return bytes;
}

Test(pagesize, huge_within_size_or_always_gives_2_MiB_pages_and_nothing_else_does)
{
  skip_if_the_system_overrides_mounts();
  static const struct { const char *options; uint64_t want; } mounts[] = {
    { "huge=within_size,size=4m", SHM_HUGE_PAGE_BYTES },
    { "huge=always,size=4m", SHM_HUGE_PAGE_BYTES },
    { "huge=advise,size=4m", 4096 },   /* fallocate's pages are no madvise's */
    { "huge=never,size=4m", 4096 },
    { "size=4m", 4096 },
  };
  for (size_t i = 0; i < sizeof mounts / sizeof mounts[0]; i++) {
    char mnt[] = "/tmp/sochdb-pages-XXXXXX";
    tu_mount_tmpfs_or_skip(mnt, mounts[i].options);
    const char *huge = strstr(mounts[i].options, "huge=");
    char want_why[64];
    snprintf(want_why, sizeof want_why, "huge=%.*s", huge ? (int)strcspn(huge + 5, ",") : 5,
             huge ? huge + 5 : "never");
    uint64_t got = page_bytes_in(mnt, "sochdb-1-2.region", want_why);
    tu_unmount(mnt);
    cr_assert_eq(got, mounts[i].want, "a tmpfs mounted with %s: %llu-byte pages", mounts[i].options,
                 (unsigned long long)got);
  }
}

/* The deepest mount that covers the directory decides, and mount points
** with spaces (written \040 in mountinfo) are read back whole. */
Test(pagesize, the_deepest_mount_decides_even_with_a_space_in_its_name)
{
  skip_if_the_system_overrides_mounts();
  char outer[] = "/tmp/sochdb pages-XXXXXX", inner[PATH_MAX];
  tu_mount_tmpfs_or_skip(outer, "huge=within_size,size=4m");
  snprintf(inner, sizeof inner, "%s/plain dir", outer);
  cr_assert_eq(mkdir(inner, 0700), 0, "mkdir %s: %s", inner, strerror(errno));
  cr_assert_eq(mount("tmpfs", inner, "tmpfs", 0, "size=4m"), 0, "mount %s: %s", inner, strerror(errno));
  uint64_t in_inner = page_bytes_in(inner, "r.region", inner);
  uint64_t in_outer = page_bytes_in(outer, "r.region", outer);
  umount2(inner, MNT_DETACH);
  tu_unmount(outer);
  cr_assert_eq(in_inner, 4096, "a plain tmpfs mounted inside a huge one");
  cr_assert_eq(in_outer, SHM_HUGE_PAGE_BYTES, "the huge tmpfs around it");
}

Test(pagesize, a_file_system_other_than_tmpfs_gets_4_KiB_pages)
{
  cr_assert_eq(page_bytes_in("/proc", "r.region", "proc /proc, not a tmpfs"), 4096);
}

Test(pagesize, a_directory_that_does_not_exist_gets_4_KiB_pages_and_says_so)
{
  cr_assert_eq(page_bytes_in("/nonexistent-sochdb-dir", "r.region", "unknown"), 4096);
  char why[64];
  cr_assert_eq(shm_page_bytes("r.region", why, sizeof why), shm_page_bytes("./r.region", NULL, 0),
               "a bare name is in the current directory");
}
