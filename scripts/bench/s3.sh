#!/usr/bin/env bash
# s3.sh - backup and restore of the shared benchmark dataset to and from one local S3 server
# (moto in server mode, or s3s-fs with SERVER=s3s), arca against restic, in one run.
#
#   scripts/bench/s3.sh [RUNS]     (default 1; tools alternate within each run)
#
# Steps per tool, each on a fresh bucket of a dedicated moto server started by this script
# (stopped on exit): init, first backup, no-change backup, restore of the latest snapshot
# into an empty directory (checked with diff -r against the source, then removed).
# Each step is timed with /usr/bin/time (wall s, user+sys CPU s, max RSS). Both tools get a
# fresh cache directory per run. Results: $ROOT/results.csv and a table on stdout.
# Env: BENCH_ROOT (default /dev/shm/arca-s3bench), BENCH_DATA (default
# /dev/shm/peerbench/pristine, else generated there with ../shared/bench/peers.sh gen),
# ARCA_BIN (default target/release/arca), ARCA_SERVICES_DIR (moto's virtualenv, as for
# scripts/services/s3.sh, which installs it), SERVER (moto, the default: one Python process,
# objects in memory; or s3s: s3s-fs, a Rust server keeping objects as files under $ROOT,
# built by scripts/services/s3s.sh install).
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
RUNS=${1:-1}
ROOT=${BENCH_ROOT:-/dev/shm/arca-s3bench}
DATA=${BENCH_DATA:-/dev/shm/peerbench/pristine}
ARCA=${ARCA_BIN:-$here/target/release/arca}
VENV=${ARCA_SERVICES_DIR:-$HOME/.cache/arca-services}/moto
PEERS=$here/../shared/bench/peers.sh
export ARCA_PASSWORD=bench RESTIC_PASSWORD=bench
export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench AWS_DEFAULT_REGION=us-east-1
command -v restic >/dev/null || { echo "restic is needed (apt-get install restic)" >&2; exit 1; }
[ -x "$ARCA" ] || { echo "no arca binary at $ARCA (cargo build --release)" >&2; exit 1; }
[ -x "$VENV/bin/moto_server" ] || "$here/scripts/services/s3.sh" start >/dev/null
mkdir -p "$ROOT"
if [ ! -d "$DATA" ]; then
  BENCH_ROOT=$(dirname "$DATA") "$PEERS" gen "$DATA" >/dev/null
fi

SERVER=${SERVER:-moto}
port=9400
while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port + 1)); done
case $SERVER in
  moto)
    "$VENV/bin/moto_server" -H 127.0.0.1 -p "$port" >"$ROOT/moto.log" 2>&1 </dev/null &
    ;;
  s3s)
    S3S=${ARCA_TEST_TOOLS:-$HOME/.cache/arca-test-tools}/bin/s3s-fs
    [ -x "$S3S" ] || "$here/scripts/services/s3s.sh" install >&2
    rm -rf "$ROOT/s3s-data" && mkdir -p "$ROOT/s3s-data"
    "$S3S" --host 127.0.0.1 --port "$port" --access-key bench --secret-key bench \
      "$ROOT/s3s-data" >"$ROOT/s3s.log" 2>&1 </dev/null &
    ;;
  *) echo "SERVER=$SERVER: use moto or s3s" >&2; exit 1 ;;
esac
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.1
done
endpoint=http://127.0.0.1:$port

bucket() {  # bucket create|empty NAME
  "$VENV/bin/python" - "$endpoint" "$1" "$2" <<'PY'
import sys, boto3
endpoint, action, name = sys.argv[1:4]
s3 = boto3.resource("s3", endpoint_url=endpoint, aws_access_key_id="bench",
                    aws_secret_access_key="bench", region_name="us-east-1")
if action == "create":
    s3.create_bucket(Bucket=name)
else:
    b = s3.Bucket(name)
    b.objects.all().delete()
    b.delete()
PY
}

CSV=$ROOT/results-$SERVER.csv
[ -f "$CSV" ] || echo "run,tool,step,wall_s,cpu_s,max_rss_kib" >"$CSV"

measure() {  # measure RUN TOOL STEP CMD...
  local run=$1 tool=$2 step=$3
  shift 3
  local t=$ROOT/time.txt
  /usr/bin/time -f "%e %U %S %M" -o "$t" "$@" >"$ROOT/$tool-$step.log" 2>&1 || {
    echo "$tool $step failed:" >&2
    tail -n 20 "$ROOT/$tool-$step.log" >&2
    exit 1
  }
  read -r wall user sys rss <"$t"
  echo "$run,$tool,$step,$wall,$(echo "$user + $sys" | bc),$rss" >>"$CSV"
  echo "run $run $tool $step: $wall s wall, $user+$sys s CPU, $rss KiB" >&2
}

for run in $(seq "$RUNS"); do
  for tool in restic arca; do
    name=$tool-$run-$$
    bucket create "$name"
    repo=s3:$endpoint/$name/repo
    cache=$ROOT/cache-$tool
    target=$ROOT/restore-$tool
    rm -rf "$cache" "$target"
    if [ "$tool" = restic ]; then
      r=(restic --cache-dir "$cache" -r "$repo")
      measure "$run" restic init "${r[@]}" init
      measure "$run" restic backup "${r[@]}" backup "$DATA"
      measure "$run" restic backup-nochange "${r[@]}" backup "$DATA"
      measure "$run" restic restore "${r[@]}" restore latest --target "$target"
    else
      a=("$ARCA" --cache-dir "$cache" -r "$repo")
      measure "$run" arca init "${a[@]}" init
      measure "$run" arca backup "${a[@]}" backup -q "$DATA"
      measure "$run" arca backup-nochange "${a[@]}" backup -q "$DATA"
      measure "$run" arca restore "${a[@]}" restore latest -q --target "$target"
    fi
    diff -r "$DATA" "$target$DATA" >/dev/null || { echo "$tool restore differs" >&2; exit 1; }
    rm -rf "$target" "$cache"
    bucket empty "$name"
  done
done

python3 - "$CSV" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
steps = ["backup", "backup-nochange", "restore"]
med = lambda tool, step, f: statistics.median(
    float(r[f]) for r in rows if r["tool"] == tool and r["step"] == step)
print("| step | restic | arca | arca / restic (wall) |")
print("| --- | --- | --- | --- |")
for s in steps:
    rw, aw = med("restic", s, "wall_s"), med("arca", s, "wall_s")
    fmt = lambda t: "%.2f s, %.1f CPU s, %.0f MiB" % (
        med(t, s, "wall_s"), med(t, s, "cpu_s"), med(t, s, "max_rss_kib") / 1024)
    print("| %s | %s | %s | %.2f |" % (s, fmt("restic"), fmt("arca"), aw / rw))
PY
