#!/usr/bin/env bash
# retention.sh - 30 daily snapshots, then `forget --keep-daily 7 --prune` and
# `check --read-data`: arca against restic on the same repository content, in one run.
#
#   scripts/bench/retention.sh [RUNS]     (default 3 runs of the two measured steps)
#
# Dataset: the shared benchmark dataset (../shared/bench/peers.sh gen), copied once; day d
# applies a mutation seeded with d (about 1% of the small files changed, 20 deleted, 40
# added, a 1 MiB append to a random and a log file, a 4 KiB insert into a large file), then
# both tools back it up with the snapshot time set to day d at 03:00. Each measured step
# runs on a fresh copy of the 30-snapshot repository, RUNS times; the table gives medians.
# Env: BENCH_ROOT (default /dev/shm/arca-retention; needs ~6 GB), ARCA_BIN (default
# target/release/arca), PEERS (default ../shared/bench/peers.sh relative to the project).
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
RUNS=${1:-3}
ROOT=${BENCH_ROOT:-/dev/shm/arca-retention}
ARCA=${ARCA_BIN:-$here/target/release/arca}
PEERS=${PEERS:-$here/../shared/bench/peers.sh}
export ARCA_PASSWORD=bench RESTIC_PASSWORD=bench
command -v restic >/dev/null || { echo "restic is needed (apt-get install restic)" >&2; exit 1; }
[ -x "$ARCA" ] || { echo "no arca binary at $ARCA (cargo build --release)" >&2; exit 1; }
mkdir -p "$ROOT"
if [ ! -d "$ROOT/pristine" ]; then
  BENCH_ROOT=$ROOT "$PEERS" gen "$ROOT/pristine" >/dev/null
fi

mutate() {  # mutate DIR DAY
python3 - "$1" "$2" <<'PY'
import os, random, sys
root, day = sys.argv[1], int(sys.argv[2])
rng = random.Random(1000 + day)
small, large = os.path.join(root, 'small'), os.path.join(root, 'large')
files = []
for dp, dns, fns in os.walk(small):
    dns.sort()
    files += [os.path.join(dp, f) for f in sorted(fns)]
words = [''.join(rng.choices('abcdefghijklmnopqrstuvwxyz', k=rng.randint(2, 9))) for _ in range(500)]
text = lambda n: (' '.join(rng.choices(words, k=n // 4 + 1)).encode())[:n]
picked = rng.sample(range(len(files)), 220)
for n, i in enumerate(picked[:200]):
    p = files[i]
    if n % 2 == 0:
        sz = os.path.getsize(p); ln = min(sz, rng.randint(64, 512))
        with open(p, 'r+b') as f:
            f.seek(rng.randint(0, max(0, sz - ln))); f.write(text(ln))
    else:
        with open(p, 'ab') as f:
            f.write(text(rng.randint(100, 2000)))
for i in picked[200:]:
    os.unlink(files[i])
dirs = sorted({os.path.dirname(p) for p in files})
for i in range(40):
    with open(os.path.join(rng.choice(dirs), f'day{day:02d}_{i:02d}.txt'), 'wb') as f:
        f.write(text(rng.randint(1024, 16384)))
with open(os.path.join(large, 'rand_0.bin'), 'ab') as f:
    f.write(rng.randbytes(1 << 20))
with open(os.path.join(large, 'log_0.log'), 'ab') as f:
    f.write(text(1 << 20))
p = os.path.join(large, 'rand_1.bin')
with open(p, 'rb') as f:
    data = f.read()
off = rng.randrange(len(data))
with open(p + '.tmp', 'wb') as f:
    f.write(data[:off]); f.write(rng.randbytes(4096)); f.write(data[off:])
os.replace(p + '.tmp', p)
PY
}

if [ ! -f "$ROOT/repos.done" ]; then
  rm -rf "$ROOT/data" "$ROOT/arca-30" "$ROOT/restic-30"
  cp -a "$ROOT/pristine" "$ROOT/data"
  "$ARCA" -r "$ROOT/arca-30" init -q
  restic -r "$ROOT/restic-30" init -q >/dev/null
  for d in $(seq 1 30); do
    mutate "$ROOT/data" "$d"
    t=$(printf '2026-10-%02d 03:00:00' "$d")
    (cd "$ROOT" && "$ARCA" -r "$ROOT/arca-30" backup -q --time "$t" data)
    (cd "$ROOT" && restic -r "$ROOT/restic-30" backup -q --time "$t" data >/dev/null)
    echo "day $d backed up" >&2
  done
  touch "$ROOT/repos.done"
fi

measure() {  # measure LABEL CMD... -> "wall rss_mib"
  local label=$1; shift
  /usr/bin/time -f '%e %M' -o "$ROOT/time.txt" "$@" >"$ROOT/out-$label.log" 2>&1 || {
    echo "failed: $*" >&2; cat "$ROOT/out-$label.log" >&2; exit 1; }
  awk '{printf "%s %.0f\n", $1, $2/1024}' "$ROOT/time.txt"
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

declare -A wall rss
for run in $(seq 1 "$RUNS"); do
  for tool in arca restic; do
    rm -rf "$ROOT/$tool-run"
    cp -a "$ROOT/$tool-30" "$ROOT/$tool-run"
    if [ "$tool" = arca ]; then
      f=$(measure forget "$ARCA" -r "$ROOT/arca-run" forget -q --keep-daily 7 --prune)
      c=$(measure check "$ARCA" -r "$ROOT/arca-run" check -q --read-data)
    else
      f=$(measure forget restic -r "$ROOT/restic-run" forget -q --keep-daily 7 --prune)
      c=$(measure check restic -r "$ROOT/restic-run" check -q --read-data)
    fi
    wall[$tool-forget]+="${f% *} "; rss[$tool-forget]+="${f#* } "
    wall[$tool-check]+="${c% *} "; rss[$tool-check]+="${c#* } "
    echo "run $run $tool: forget+prune ${f% *}s, check --read-data ${c% *}s" >&2
  done
done
echo "| step | arca wall s (RSS MiB) | restic wall s (RSS MiB) | arca/restic |"
echo "| --- | --- | --- | --- |"
for step in forget check; do
  aw=$(tr ' ' '\n' <<<"${wall[arca-$step]}" | grep . | median)
  rw=$(tr ' ' '\n' <<<"${wall[restic-$step]}" | grep . | median)
  ar=$(tr ' ' '\n' <<<"${rss[arca-$step]}" | grep . | median)
  rr=$(tr ' ' '\n' <<<"${rss[restic-$step]}" | grep . | median)
  name=$([ "$step" = forget ] && echo "forget --keep-daily 7 --prune" || echo "check --read-data")
  echo "| $name | $aw ($ar) | $rw ($rr) | $(awk -v a="$aw" -v b="$rw" 'BEGIN{printf "%.2f", a/b}') |"
done
echo "repository after prune: arca $(du -sm "$ROOT/arca-run" | cut -f1) MiB, restic $(du -sm "$ROOT/restic-run" | cut -f1) MiB"
