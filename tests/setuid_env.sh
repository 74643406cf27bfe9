#!/bin/sh
# A set-user-ID program that links libsochdb must not run what its caller's
# environment names ($SOCHDB_DAEMON, $PATH) with its privileges, nor put its
# region where $SOCHDB_SHM_DIR says. Needs root (it makes a set-user-ID
# program), setpriv(1) and cc; without them it says so and exits 77, which
# ctest counts as skipped. Usage: tests/setuid_env.sh BUILD_DIR
set -eu
if [ "$(id -u)" != 0 ] || ! command -v setpriv >/dev/null || ! command -v cc >/dev/null; then
  echo "setuid_env.sh: skipped (needs root, setpriv and cc)"; exit 77
fi
B=$(cd "$1" && pwd); W=$(mktemp -d); chmod 755 "$W"
cleanup() {
  set +e
  pid=$(cat "$W/db/LOCK" 2>/dev/null); [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null && sleep 1
  rm -f "/dev/shm/sochdb-$(stat -c '%D' "$W/db" 2>/dev/null)-$(printf '%x' "$(stat -c '%i' "$W/db" 2>/dev/null)").region"
  rm -rf "$W"
}
trap cleanup EXIT
cat > "$W/app.c" <<EOC
#include <sochdb.h>
#include <stdio.h>
int main(void) { sochdb *db; int rc = sochdb_open("$W/db", NULL, &db);
  printf("open: %d\n", rc); if (!rc) sochdb_close(db); return 0; }
EOC
cat > "$W/evil.c" <<EOC
#include <stdio.h>
#include <unistd.h>
int main(void) { FILE *f = fopen("$W/pwned", "w"); if (f) fprintf(f, "euid %d\n", (int)geteuid()); return 1; }
EOC
cc -o "$W/app" "$W/app.c" -I"$B/../include" -L"$B" -lsochdb -Wl,-rpath,"$B"
cc -o "$W/evil" "$W/evil.c"
chmod 4755 "$W/app"
mkdir "$W/shm"; chmod 777 "$W/shm"
setpriv --reuid=65534 --regid=65534 --clear-groups env SOCHDB_DAEMON="$W/evil" SOCHDB_SHM_DIR="$W/shm" "$W/app"
if [ -e "$W/pwned" ]; then echo "FAIL: \$SOCHDB_DAEMON ran with $(cat "$W/pwned")"; exit 1; fi
if ls "$W/shm" | grep -q region; then echo "FAIL: the region was made in \$SOCHDB_SHM_DIR"; exit 1; fi
echo PASS
