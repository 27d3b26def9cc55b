#!/usr/bin/env bash
# Prepare a fresh machine for running or testing the mesh: Python venv in .venv with the
# project installed editable (plus test extras). Idempotent: re-runs only when
# pyproject.toml changed. Used by deploy/dev/up.sh and .ci/run.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"

python="${PYTHON:-python3}"
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "bootstrap: Python 3.11+ is required (set PYTHON=/path/to/python3.11)" >&2
    exit 1
fi

# Debian/Ubuntu images may lack venv support; install it when we can.
if ! "$python" -c 'import ensurepip, venv' 2>/dev/null; then
    if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv
    else
        echo "bootstrap: the Python venv module is missing (apt-get install python3-venv)" >&2
        exit 1
    fi
fi

# The DNS tests query the server with dig (Debian/Ubuntu package dnsutils). Install it only
# when missing, and only where we can (apt-get as root); never fail the bootstrap over it.
if ! command -v dig >/dev/null 2>&1; then
    if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
        apt_log="$(mktemp)"
        if ! { apt-get update -qq \
            && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends dnsutils; } \
            >"$apt_log" 2>&1; then
            cat "$apt_log" >&2
            echo "bootstrap: could not install dnsutils (dig); the DNS tests that use dig need it" >&2
        fi
        rm -f "$apt_log"
    else
        echo "bootstrap: dig is missing; the DNS tests that use it need it (apt-get install dnsutils)" >&2
    fi
fi

stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -f "$stamp" ]; then
    [ -x .venv/bin/python ] || "$python" -m venv .venv
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e '.[test]'
    rm -f .venv/.installed-*
    touch "$stamp"
fi
