#!/usr/bin/env bash
# A real SMTP server for the alert tests: aiosmtpd (PyPI) in a virtualenv. The tests start
# their own servers on 127.0.0.1 (plain and STARTTLS, mail kept in a Maildir) and stop them
# by pid; this script only installs it.
#
#   scripts/services/smtp.sh install   # install aiosmtpd if needed (about 10 s), print
#                                      # the export line: ARCA_TEST_AIOSMTPD=PYTHON
#
# Use:  eval "$(scripts/services/smtp.sh install)"
#
# The virtualenv lives in ${ARCA_SERVICES_DIR:-$HOME/.cache/arca-services}/aiosmtpd. Messages
# go to stderr; only the export line goes to stdout.
set -euo pipefail

DIR=${ARCA_SERVICES_DIR:-$HOME/.cache/arca-services}
VENV=$DIR/aiosmtpd

say() { echo "smtp.sh: $*" >&2; }

install() {
    if ! "$VENV/bin/python" -c 'import aiosmtpd' 2>/dev/null; then
        say "installing aiosmtpd into $VENV"
        mkdir -p "$DIR"
        python3 -m venv "$VENV"
        "$VENV/bin/pip" install --quiet --disable-pip-version-check aiosmtpd >&2
    fi
    echo "export ARCA_TEST_AIOSMTPD=$VENV/bin/python"
}

case ${1:-} in
install) install ;;
*)
    echo "usage: $0 install" >&2
    exit 2
    ;;
esac
