#!/usr/bin/env bash
# A real S3 server for tests: moto in server mode on 127.0.0.1, data in memory.
#
#   scripts/services/s3.sh start   # install moto if needed, start it, create bucket arca-test,
#                                  # print export lines
#   scripts/services/s3.sh env     # print the export lines of the running server
#   scripts/services/s3.sh stop    # stop it (by pid file)
#
# Use:  eval "$(scripts/services/s3.sh start)"
#
# State lives in ${ARCA_SERVICES_DIR:-$HOME/.cache/arca-services}: the virtualenv (moto/),
# the pid file, the port and the log. The port is ARCA_S3_PORT if set, else the first free
# one from 9000 up. Starting twice reuses the running server. Messages go to stderr; only the
# export lines go to stdout.
set -euo pipefail

DIR=${ARCA_SERVICES_DIR:-$HOME/.cache/arca-services}
VENV=$DIR/moto
PIDFILE=$DIR/moto.pid
PORTFILE=$DIR/moto.port
LOG=$DIR/moto.log
BUCKET=arca-test

say() { echo "s3.sh: $*" >&2; }

running() {
    [[ -f $PIDFILE ]] || return 1
    local pid
    pid=$(cat "$PIDFILE")
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null
}

port_free() {
    ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

answers() {
    # Any HTTP answer will do (moto answers the root with a bucket listing).
    "$VENV/bin/python" - "$1" <<'EOF' 2>/dev/null
import sys, urllib.request, urllib.error
try:
    urllib.request.urlopen("http://127.0.0.1:%s/" % sys.argv[1], timeout=1)
except urllib.error.HTTPError:
    pass
EOF
}

install() {
    if [[ -x $VENV/bin/moto_server ]] && "$VENV/bin/python" -c 'import moto, boto3' 2>/dev/null; then
        return
    fi
    say "installing moto into $VENV (about 1.5 min)"
    mkdir -p "$DIR"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check 'moto[server]' boto3 >&2
}

print_env() {
    local port
    port=$(cat "$PORTFILE")
    echo "export ARCA_TEST_S3=s3:http://127.0.0.1:$port/$BUCKET"
    echo "export AWS_ACCESS_KEY_ID=test"
    echo "export AWS_SECRET_ACCESS_KEY=test"
    echo "export AWS_DEFAULT_REGION=us-east-1"
}

create_bucket() {
    local port=$1
    "$VENV/bin/python" - "$port" "$BUCKET" <<'EOF'
import sys, boto3
port, bucket = sys.argv[1], sys.argv[2]
s3 = boto3.client("s3", endpoint_url="http://127.0.0.1:%s" % port,
                  aws_access_key_id="test", aws_secret_access_key="test",
                  region_name="us-east-1")
names = [b["Name"] for b in s3.list_buckets().get("Buckets", [])]
if bucket not in names:
    s3.create_bucket(Bucket=bucket)
EOF
}

start() {
    install
    mkdir -p "$DIR"
    if running; then
        create_bucket "$(cat "$PORTFILE")"
        print_env
        return
    fi
    local port=${ARCA_S3_PORT:-}
    if [[ -z $port ]]; then
        port=9000
        while ! port_free "$port"; do
            port=$((port + 1))
            if ((port > 9100)); then
                say "no free port in 9000-9100; set ARCA_S3_PORT"
                exit 1
            fi
        done
    elif ! port_free "$port"; then
        say "port $port (ARCA_S3_PORT) is taken"
        exit 1
    fi
    say "starting moto on 127.0.0.1:$port (log: $LOG)"
    nohup "$VENV/bin/moto_server" -H 127.0.0.1 -p "$port" >"$LOG" 2>&1 </dev/null &
    echo $! >"$PIDFILE"
    echo "$port" >"$PORTFILE"
    local i
    for ((i = 0; i < 150; i++)); do
        if answers "$port"; then
            create_bucket "$port"
            print_env
            return
        fi
        if ! running; then
            say "moto exited; its log:"
            tail -n 20 "$LOG" >&2
            rm -f "$PIDFILE"
            exit 1
        fi
        sleep 0.2
    done
    say "moto did not answer within 30 s; its log:"
    tail -n 20 "$LOG" >&2
    stop
    exit 1
}

stop() {
    if running; then
        local pid
        pid=$(cat "$PIDFILE")
        kill "$pid" 2>/dev/null || true
        local i
        for ((i = 0; i < 50; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$pid" 2>/dev/null || true
        say "stopped moto (pid $pid)"
    fi
    rm -f "$PIDFILE" "$PORTFILE"
}

case ${1:-} in
start) start ;;
stop) stop ;;
env)
    if ! running; then
        say "moto is not running; run: $0 start"
        exit 1
    fi
    print_env
    ;;
*)
    echo "usage: $0 start|stop|env" >&2
    exit 2
    ;;
esac
