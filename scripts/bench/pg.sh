#!/usr/bin/env bash
# arca vs pgBackRest on one PostgreSQL 15 cluster (docs/BENCHMARKS.md, "PostgreSQL").
#
#   cargo build --release -p arca-cli && sudo scripts/bench/pg.sh
#
# Phases, each repeated RUNS times (medians reported):
#   1. base backup into an empty repository: arca pg basebackup (file-level, the default
#      when the data directory is local) vs pgbackrest --type=full (zstd level 3 for both,
#      pgBackRest process-max = cores, fast checkpoint); arca --method stream
#      (pg_basebackup) into its own empty repository for reference
#   2. a second base backup of the unchanged cluster (arca: bytes added vs the first)
#   3. restore of the base backup into an empty directory (no WAL replay) for both, and
#      of arca's stream base backup
#   4. WAL push of SEGMENTS segments, replayed exactly like PostgreSQL's archiver does it
#      (one call per segment, in order, .ready renamed to .done after each success):
#      arca wal-push (background pusher, the default / --batch 1: one segment per process)
#      vs pgbackrest archive-push (--archive-async with process-max = cores / sync)
# Peak RSS comes from /usr/bin/time -v. Everything runs as user postgres.
#
# Environment: SCALE (pgbench scale, default 50), SEGMENTS (200), RUNS (3),
# BENCH_DIR (default /var/tmp/arca-pg-bench; removed at the end unless KEEP=1),
# SKIP_BACKUP=1 (only the WAL phase), SKIP_WAL=1 (only the base backup and restore
# phases), SYNC=0 (skip the one-segment-per-call comparison),
# ARCA (default target/release/arca), PGBIN (/usr/lib/postgresql/15/bin).
set -euo pipefail

SCALE=${SCALE:-50}
SEGMENTS=${SEGMENTS:-200}
RUNS=${RUNS:-3}
BENCH_DIR=${BENCH_DIR:-/var/tmp/arca-pg-bench}
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
ARCA=${ARCA:-$(cd "$(dirname "$0")/../.." && pwd)/target/release/arca}
PORT=${PORT:-5461}
CORES=$(nproc)

[ "$(id -u)" = 0 ] || { echo "run as root (servers run as postgres)" >&2; exit 1; }
command -v pgbackrest >/dev/null || { echo "pgbackrest is not installed" >&2; exit 1; }
[ -x "$ARCA" ] || { echo "no arca binary at $ARCA (cargo build --release -p arca-cli)" >&2; exit 1; }

rm -rf "$BENCH_DIR"
mkdir -p "$BENCH_DIR"
chown postgres: "$BENCH_DIR"
chmod 755 "$BENCH_DIR"
B=$BENCH_DIR
cp "$ARCA" "$B/arca"
chmod 755 "$B/arca"
ARCA=$B/arca
echo "bench password" > "$B/password"
chown postgres: "$B/password" "$ARCA"
chmod 600 "$B/password"

PGENV=(env PATH="$PGBIN:/usr/bin:/bin" ARCA_REPOSITORY="$B/arca-repo" ARCA_PASSWORD_FILE="$B/password" LC_ALL=C)
as_pg() { runuser -u postgres -- "${PGENV[@]}" "$@"; }
URI="postgresql:///postgres?host=$B&port=$PORT&user=postgres"
psql_() { as_pg psql -XAtq -d "$URI" -c "$1"; }

cat > "$B/pgbackrest.conf" <<EOF
[global]
repo1-path=$B/pgbr-repo
repo1-retention-full=100
compress-type=zst
compress-level=3
process-max=$CORES
start-fast=y
log-level-console=warn
log-level-file=off
lock-path=$B/pgbr-lock
spool-path=$B/pgbr-spool
archive-timeout=600

[bench]
pg1-path=$B/data
pg1-socket-path=$B
pg1-port=$PORT
EOF
chown postgres: "$B/pgbackrest.conf"
PGBR=(pgbackrest --config="$B/pgbackrest.conf" --stanza=bench)

cleanup() {
  as_pg pg_ctl -D "$B/data" -m immediate stop >/dev/null 2>&1 || true
  [ "${KEEP:-0}" = 1 ] || rm -rf "$B"
}
trap cleanup EXIT

# timed LABEL CMD...: runs CMD as postgres under /usr/bin/time -v; appends
# "LABEL seconds max_rss_kib" to $B/times.
timed() {
  local label=$1; shift
  local t0 t1
  t0=$(date +%s.%N)
  runuser -u postgres -- /usr/bin/time -v -o "$B/time.out" "${PGENV[@]}" "$@" >"$B/cmd.out" 2>&1 \
    || { cat "$B/cmd.out" >&2; exit 1; }
  t1=$(date +%s.%N)
  local rss
  rss=$(awk -F': ' '/Maximum resident/ {print $2}' "$B/time.out")
  echo "$label $(echo "$t1 - $t0" | bc -l) $rss" | tee -a "$B/times"
}

# settle PATH...: removes restore targets and leaves the machine as if they had been deleted
# long before the next restore, the same for both tools, which alternate who goes first.
# sync: the deferred work of the deleted files and of dirty pages must not land in whichever
# tool runs next. Then the page cache is dropped and the repositories, the cluster and both
# programs are read back in: without a journal (this disk's ext4 has none), ext4 does not
# reuse an inode deleted in the last 60 s while its inode-table block is cached
# (fs/ext4/ialloc.c, recently_deleted), so each file created right after the removal of a
# restored cluster (~1,600 files) scanned past all of them: the tool restoring second paid
# 0.7-1.3 s more, and which one that was decided the ratio (docs/BENCHMARKS.md).
settle() {
  rm -rf "$@"; sync
  [ -w /proc/sys/vm/drop_caches ] || return 0
  echo 1 > /proc/sys/vm/drop_caches
  find "$B/arca-repo" "$B/arca-stream" "$B/pgbr-repo" "$B/data" -type f -exec cat {} + >/dev/null 2>&1 || true
  cat "$ARCA" "$(command -v pgbackrest)" >/dev/null
  as_pg "$ARCA" --version >/dev/null 2>&1 || true
  as_pg "${PGBR[@]}" version >/dev/null 2>&1 || true
}
du_of() { du -sb "$B/$1" | tr '\n' ' '; echo; }

# bytes_added of the last arca --json summary in $B/cmd.out
added() { python3 -c 'import json,sys; print([json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")][-1]["bytes_added"])' "$B/cmd.out"; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
stat_of() { awk -v l="$1" -v f="$2" '$1==l {print $f}' "$B/times" | median; }

echo "== cluster: pgbench scale $SCALE"
as_pg initdb --no-sync -U postgres -A trust -D "$B/data" >/dev/null
cat >> "$B/data/postgresql.conf" <<EOF
listen_addresses = ''
port = $PORT
unix_socket_directories = '$B'
wal_level = replica
archive_mode = on
archive_command = 'true'
max_wal_size = 4GB
max_wal_senders = 4
EOF
as_pg pg_ctl -D "$B/data" -l "$B/server.log" -w start >/dev/null
as_pg pgbench -i -s "$SCALE" -q "$URI" 2>&1 | tail -1
psql_ "checkpoint" >/dev/null
DBSIZE=$(psql_ "select pg_size_pretty(sum(pg_database_size(datname))) from pg_database")
echo "cluster size: $DBSIZE"
# Both tools archive every segment while base backups run (each needs its WAL).
psql_ "alter system set archive_command = '$ARCA wal-push %p && pgbackrest --config=$B/pgbackrest.conf --stanza=bench archive-push %p'" >/dev/null
psql_ "select pg_reload_conf()" >/dev/null

: > "$B/times"
for run in $(seq "$RUNS"); do
  [ "${SKIP_BACKUP:-0}" = 1 ] && break
  echo "== base backup run $run"
  rm -rf "$B/arca-repo" "$B/arca-stream" "$B/pgbr-repo" "$B/pgbr-spool"
  as_pg "$ARCA" init >/dev/null
  as_pg env ARCA_REPOSITORY="$B/arca-stream" "$ARCA" init >/dev/null
  as_pg "${PGBR[@]}" stanza-create >/dev/null
  rm -rf "$B/pgbr-stanza"
  cp -a "$B/pgbr-repo" "$B/pgbr-stanza"
  timed arca_backup1 "$ARCA" --json pg basebackup -d "$URI"
  first=$(added)
  timed arca_backup2 "$ARCA" --json pg basebackup -d "$URI"
  second=$(added)
  echo "arca_second_added_pct $(echo "100 * $second / $first" | bc -l) 0" | tee -a "$B/times"
  echo "arca_repo_bytes $(du -sb "$B/arca-repo" | cut -f1) 0" | tee -a "$B/times"
  timed arca_backup_stream env ARCA_REPOSITORY="$B/arca-stream" "$ARCA" --json pg basebackup --method stream -d "$URI"
  timed pgbr_backup_full "${PGBR[@]}" --type=full backup
  echo "pgbr_repo_bytes $(du -sb "$B/pgbr-repo/backup" | cut -f1) 0" | tee -a "$B/times"
  timed pgbr_backup_incr "${PGBR[@]}" --type=incr backup

  echo "== restore run $run"
  # pgBackRest restores the newest backup (the incremental): ask for the full one.
  FULL=$(as_pg "${PGBR[@]}" info --output=json | python3 -c 'import json,sys; print([b["label"] for b in json.load(sys.stdin)[0]["backup"] if b["type"]=="full"][-1])')
  restore_arca() { timed arca_restore "$ARCA" pg restore --pgdata "$B/restore-arca" --target latest; }
  restore_pgbr() { timed pgbr_restore "${PGBR[@]}" --pg1-path="$B/restore-pgbr" --set="$FULL" --type=immediate restore; }
  settle "$B/restore-arca" "$B/restore-pgbr"
  if (( run % 2 )); then
    restore_arca; du_of restore-arca; settle "$B/restore-arca"; restore_pgbr; du_of restore-pgbr
  else
    restore_pgbr; du_of restore-pgbr; settle "$B/restore-pgbr"; restore_arca; du_of restore-arca
  fi
  settle "$B/restore-arca" "$B/restore-pgbr"
  timed arca_restore_stream env ARCA_REPOSITORY="$B/arca-stream" "$ARCA" pg restore --pgdata "$B/restore-arca" --target latest
  settle "$B/restore-arca"
done

if [ "${SKIP_WAL:-0}" = 1 ]; then
  echo
  echo "== medians over $RUNS runs (seconds; peak RSS KiB)"
  for l in arca_backup1 arca_backup2 arca_backup_stream pgbr_backup_full pgbr_backup_incr \
           arca_restore arca_restore_stream pgbr_restore; do
    printf "%-20s %8.2f s  %8s KiB\n" "$l" "$(stat_of "$l" 2)" "$(stat_of "$l" 3)"
  done
  printf "%-20s %8.2f %%\n" arca_second_added "$(stat_of arca_second_added_pct 2)"
  printf "%-20s %8s bytes\n" arca_repo "$(stat_of arca_repo_bytes 2)"
  printf "%-20s %8s bytes\n" pgbr_repo "$(stat_of pgbr_repo_bytes 2)"
  r() { echo "scale=2; $(stat_of "$1" 2) / $(stat_of "$2" 2)" | bc -l; }
  echo "backup  arca/pgBackRest: $(r arca_backup1 pgbr_backup_full)x (stream method: $(r arca_backup_stream pgbr_backup_full)x)"
  echo "second  arca/pgBackRest incr: $(r arca_backup2 pgbr_backup_incr)x"
  echo "restore arca/pgBackRest: $(r arca_restore pgbr_restore)x (stream method: $(r arca_restore_stream pgbr_restore)x)"
  exit 0
fi

if [ ! -d "$B/pgbr-stanza" ]; then
  rm -rf "$B/pgbr-repo"
  as_pg "${PGBR[@]}" stanza-create >/dev/null
  cp -a "$B/pgbr-repo" "$B/pgbr-stanza"
fi
echo "== WAL: generating $SEGMENTS segments"
psql_ "alter system set archive_command = 'false'" >/dev/null
psql_ "select pg_reload_conf()" >/dev/null
# Realistic WAL at a useful rate: pgbench transactions, then updates of a quarter of the
# accounts after a checkpoint (heap updates plus full-page images), until enough are ready.
as_pg pgbench -n -c 2 -j 2 -T 10 "$URI" >/dev/null 2>&1
i=0
while [ "$(ls "$B/data/pg_wal/archive_status" | grep -c '\.ready$' || true)" -lt "$SEGMENTS" ]; do
  psql_ "checkpoint" >/dev/null
  psql_ "update pgbench_accounts set abalance = abalance + 1 where aid % 4 = $i" >/dev/null
  i=$(( (i + 1) % 4 ))
done
as_pg pg_ctl -D "$B/data" -m fast -w stop >/dev/null
cp -a "$B/data/pg_wal/archive_status" "$B/archive_status.orig"
READY=$(ls "$B/archive_status.orig" | grep '\.ready$' | sed 's/\.ready$//' | sort | head -n "$SEGMENTS")
echo "$READY" > "$B/ready.list"
chown postgres: "$B/ready.list"
echo "segments: $(wc -l < "$B/ready.list"), $(du -shc $(sed "s|^|$B/data/pg_wal/|" "$B/ready.list") | tail -1 | cut -f1)"

# The archiver, as PostgreSQL runs it: in the data directory, one call per segment.
cat > "$B/archiver.sh" <<'EOF'
#!/usr/bin/env bash
# archiver.sh DATA LIST CMD...: runs "CMD pg_wal/NAME" for every NAME of LIST, in order,
# marking NAME done after each success (like PostgreSQL's archiver).
set -euo pipefail
data=$1; list=$2; shift 2
cd "$data"
while read -r name; do
  "$@" "pg_wal/$name"
  mv "pg_wal/archive_status/$name.ready" "pg_wal/archive_status/$name.done"
done < "$list"
EOF
chmod 755 "$B/archiver.sh"

# Background pushers of the previous run (arca's worker, pgBackRest's async process) end
# on their own once idle; wait for them before wiping their directories.
wait_pushers() {
  while pgrep -u postgres -f 'wal-push .*--worker|archive-push:async' >/dev/null; do sleep 0.2; done
}
reset_wal() {
  wait_pushers
  rm -rf "$B/data/pg_wal/archive_status" "$B/data/pg_wal/arca-spool" "$B/pgbr-spool"
  cp -a "$B/archive_status.orig" "$B/data/pg_wal/archive_status"
  rm -rf "$B/arca-repo" "$B/pgbr-repo"
  as_pg "$ARCA" init >/dev/null
  # The stanza as stanza-create left it (the server is down now).
  cp -a "$B/pgbr-stanza" "$B/pgbr-repo"
}

for run in $(seq "$RUNS"); do
  echo "== WAL push run $run"
  reset_wal
  timed arca_push_batch "$B/archiver.sh" "$B/data" "$B/ready.list" "$ARCA" wal-push
  echo "arca_wal_bytes $(du -sb "$B/arca-repo" | cut -f1) 0" | tee -a "$B/times"
  reset_wal
  timed pgbr_push_async "$B/archiver.sh" "$B/data" "$B/ready.list" "${PGBR[@]}" --archive-async archive-push
  echo "pgbr_wal_bytes $(du -sb "$B/pgbr-repo" | cut -f1) 0" | tee -a "$B/times"
  if [ "${SYNC:-1}" = 1 ]; then
    reset_wal
    timed arca_push_single "$B/archiver.sh" "$B/data" "$B/ready.list" "$ARCA" wal-push --batch 1
    reset_wal
    timed pgbr_push_sync "$B/archiver.sh" "$B/data" "$B/ready.list" "${PGBR[@]}" archive-push
  fi
done

echo
echo "== medians over $RUNS runs (seconds; peak RSS KiB)"
for l in arca_backup1 arca_backup2 arca_backup_stream pgbr_backup_full pgbr_backup_incr \
         arca_restore arca_restore_stream pgbr_restore \
         arca_push_batch pgbr_push_async arca_push_single pgbr_push_sync; do
  if grep -q "^$l " "$B/times"; then
    printf "%-18s %8.2f s  %8s KiB\n" "$l" "$(stat_of "$l" 2)" "$(stat_of "$l" 3)"
  fi
done
grep -q "^arca_second_added_pct " "$B/times" &&
  printf "%-18s %8.2f %%\n" arca_second_added "$(stat_of arca_second_added_pct 2)"
printf "%-18s %8s bytes\n" arca_repo "$(stat_of arca_repo_bytes 2)"
printf "%-18s %8s bytes\n" pgbr_repo "$(stat_of pgbr_repo_bytes 2)"
printf "%-18s %8s bytes\n" arca_wal_repo "$(stat_of arca_wal_bytes 2)"
printf "%-18s %8s bytes\n" pgbr_wal_repo "$(stat_of pgbr_wal_bytes 2)"
ratio() { grep -q "^$1 " "$B/times" && echo "scale=2; $(stat_of "$1" 2) / $(stat_of "$2" 2)" | bc -l || echo "-"; }
echo "backup  arca/pgBackRest: $(ratio arca_backup1 pgbr_backup_full)x"
echo "restore arca/pgBackRest: $(ratio arca_restore pgbr_restore)x"
echo "wal-push arca batch / pgBackRest async: $(ratio arca_push_batch pgbr_push_async)x"
if grep -q "^arca_push_single " "$B/times"; then
  echo "wal-push arca single / pgBackRest sync: $(ratio arca_push_single pgbr_push_sync)x"
fi
