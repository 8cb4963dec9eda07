#!/usr/bin/env bash
# prune_memory.sh - peak memory of `prune` against the number of blobs in the repository.
#
#   scripts/bench/prune_memory.sh [FILES...]   (default: 250000 1000000)
#
# For each N: N small files of distinct content (one data blob each), backed up; then 10%
# of them deleted and backed up again; the first snapshot forgotten; `prune` measured with
# /usr/bin/time (wall, peak RSS). Env: BENCH_ROOT (default /dev/shm/arca-prune-mem),
# ARCA_BIN (default target/release/arca).
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
ROOT=${BENCH_ROOT:-/dev/shm/arca-prune-mem}
ARCA=${ARCA_BIN:-$here/target/release/arca}
export ARCA_PASSWORD=bench
sizes=("$@"); [ ${#sizes[@]} -gt 0 ] || sizes=(250000 1000000)
echo "| files (blobs) | backup s | prune wall s | prune peak RSS MiB | bytes per blob |"
echo "| --- | --- | --- | --- | --- |"
for n in "${sizes[@]}"; do
  rm -rf "$ROOT"; mkdir -p "$ROOT/src"
  python3 - "$ROOT/src" "$n" <<'PY'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    d = os.path.join(root, f'{i // 1000:04d}')
    if i % 1000 == 0:
        os.mkdir(d)
    with open(os.path.join(d, f'{i:07d}'), 'w') as f:
        f.write(f'file {i} ' * 12)
PY
  "$ARCA" -r "$ROOT/repo" init -q
  s=$(date +%s.%N)
  "$ARCA" -r "$ROOT/repo" backup -q "$ROOT/src"
  b=$(echo "$(date +%s.%N) - $s" | bc)
  first=$("$ARCA" -r "$ROOT/repo" snapshots --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')
  find "$ROOT/src" -type f -name '*0' -delete     # every 10th file
  "$ARCA" -r "$ROOT/repo" backup -q "$ROOT/src"
  "$ARCA" -r "$ROOT/repo" forget -q "$first"
  /usr/bin/time -f '%e %M' -o "$ROOT/time.txt" "$ARCA" -r "$ROOT/repo" prune -q
  read -r wall rss < "$ROOT/time.txt"
  printf '| %d | %.1f | %s | %.0f | %.0f |\n' "$n" "$b" "$wall" "$((rss / 1024))" "$(echo "$rss * 1024 / $n" | bc)"
done
rm -rf "$ROOT"
