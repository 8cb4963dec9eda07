#!/usr/bin/env bash
# A real S3 server that checks signatures and keeps objects on disk: s3s-fs on 127.0.0.1.
#
#   scripts/services/s3s.sh install  # build s3s-fs once (about 4 min) into the tool cache
#   scripts/services/s3s.sh start    # install if needed, start it, create bucket arca-test,
#                                    # print export lines
#   scripts/services/s3s.sh env      # print the export lines of the running server
#   scripts/services/s3s.sh stop     # stop it (by pid file)
#
# Use:  eval "$(scripts/services/s3s.sh start)"
#
# The binary is cached in ${ARCA_TEST_TOOLS:-$HOME/.cache/arca-test-tools}/bin (outside
# target/, so CI can keep it between runs); s3s-fs 0.14.1 is the newest release that builds
# with Rust 1.95. Server state lives in ${ARCA_SERVICES_DIR:-$HOME/.cache/arca-services}:
# the data directory (s3s-data/, one directory per bucket, emptied when a server starts),
# the pid file, the port and the log. The port is ARCA_S3S_PORT if set, else the first free one from 9200 up. The keys are
# fixed test keys (printed as ARCA_TEST_S3S_ACCESS_KEY / ARCA_TEST_S3S_SECRET_KEY). Messages
# go to stderr; only the export lines go to stdout.
set -euo pipefail

TOOLS=${ARCA_TEST_TOOLS:-$HOME/.cache/arca-test-tools}
BIN=$TOOLS/bin/s3s-fs
VERSION=0.14.1
DIR=${ARCA_SERVICES_DIR:-$HOME/.cache/arca-services}
DATA=$DIR/s3s-data
PIDFILE=$DIR/s3s.pid
PORTFILE=$DIR/s3s.port
LOG=$DIR/s3s.log
BUCKET=arca-test
ACCESS_KEY=arca-test-access
SECRET_KEY=arca-test-secret-key-0123456789

say() { echo "s3s.sh: $*" >&2; }

running() {
    [[ -f $PIDFILE ]] || return 1
    local pid
    pid=$(cat "$PIDFILE")
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null
}

port_free() {
    ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

install() {
    if [[ -x $BIN ]] && "$BIN" --version 2>/dev/null | grep -q "$VERSION"; then
        return
    fi
    if [[ -x $BIN ]] && ! "$BIN" --version >/dev/null 2>&1; then
        # Older builds may lack --version; trust a binary that answers --help.
        "$BIN" --help >/dev/null 2>&1 && return
    fi
    say "building s3s-fs $VERSION into $TOOLS (about 4 min, once)"
    mkdir -p "$TOOLS"
    cargo install --locked "s3s-fs@$VERSION" --features binary --root "$TOOLS" >&2
}

print_env() {
    local port
    port=$(cat "$PORTFILE")
    echo "export ARCA_TEST_S3S=s3:http://127.0.0.1:$port/$BUCKET"
    echo "export ARCA_TEST_S3S_ACCESS_KEY=$ACCESS_KEY"
    echo "export ARCA_TEST_S3S_SECRET_KEY=$SECRET_KEY"
    echo "export ARCA_TEST_S3S_DATA=$DATA"
}

start() {
    install
    mkdir -p "$DIR"
    if running; then
        print_env
        return
    fi
    local port=${ARCA_S3S_PORT:-}
    if [[ -z $port ]]; then
        port=9200
        while ! port_free "$port"; do
            port=$((port + 1))
            if ((port > 9300)); then
                say "no free port in 9200-9300; set ARCA_S3S_PORT"
                exit 1
            fi
        done
    elif ! port_free "$port"; then
        say "port $port (ARCA_S3S_PORT) is taken"
        exit 1
    fi
    # s3s-fs serves the directories of its root as buckets; a fresh server starts empty.
    rm -rf "$DATA"
    mkdir -p "$DATA/$BUCKET"
    say "starting s3s-fs on 127.0.0.1:$port (data: $DATA, log: $LOG)"
    nohup "$BIN" --host 127.0.0.1 --port "$port" --access-key "$ACCESS_KEY" \
        --secret-key "$SECRET_KEY" "$DATA" >"$LOG" 2>&1 </dev/null &
    echo $! >"$PIDFILE"
    echo "$port" >"$PORTFILE"
    local i
    for ((i = 0; i < 100; i++)); do
        if ! port_free "$port"; then
            print_env
            return
        fi
        if ! running; then
            say "s3s-fs exited; its log:"
            tail -n 20 "$LOG" >&2
            rm -f "$PIDFILE"
            exit 1
        fi
        sleep 0.1
    done
    say "s3s-fs did not listen within 10 s; its log:"
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
        say "stopped s3s-fs (pid $pid)"
    fi
    rm -f "$PIDFILE" "$PORTFILE"
}

case ${1:-} in
install) install ;;
start) start ;;
stop) stop ;;
env)
    if ! running; then
        say "s3s-fs is not running; run: $0 start"
        exit 1
    fi
    print_env
    ;;
*)
    echo "usage: $0 install|start|stop|env" >&2
    exit 2
    ;;
esac
