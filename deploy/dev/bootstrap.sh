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

# Tools the tests drive (Debian/Ubuntu packages): dig for the DNS tests (dnsutils),
# docker-compose to validate deploy/compose (docker-compose), systemd-analyze to verify the
# units in deploy/systemd (systemd), ip / iptables / curl for the network-namespace tests of
# interception and multi-host routing (iproute2, iptables, curl), chromium and its driver for the
# web page's headless-browser test (chromium, chromium-driver). Installed only when missing, and
# only where we can (apt-get as root); never fail the bootstrap over them: the tests that need one
# say so (and fail under CI).
missing_tools=()
for pair in dig:dnsutils docker-compose:docker-compose systemd-analyze:systemd ip:iproute2 iptables:iptables \
    curl:curl chromium:chromium chromedriver:chromium-driver; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || missing_tools+=("${pair#*:}")
done
if [ "${#missing_tools[@]}" -gt 0 ]; then
    if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
        apt_log="$(mktemp)"
        if ! { apt-get update -qq \
            && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing_tools[@]}"; } \
            >"$apt_log" 2>&1; then
            cat "$apt_log" >&2
            echo "bootstrap: could not install ${missing_tools[*]}; the tests that use them need them" >&2
        fi
        rm -f "$apt_log"
    else
        echo "bootstrap: missing ${missing_tools[*]} (apt-get install them); the tests that use them need them" >&2
    fi
fi

# Docker, for `mesh registrar` (and the registrar inside `mesh up`) and its tests: docker.io
# (dockerd, containerd, runc) and busybox-static (the tests build their image from it). Installed
# when missing (apt-get as root); then, when no daemon answers, dockerd is started in the background
# with the vfs storage driver (works on any file system, also inside VMs without overlayfs), logging
# to /var/log/mesh-dockerd.log, and left running. With MESH_REQUIRE_DOCKER=1 (the default when CI
# is set: .ci/run sets it) any failure here stops the bootstrap; otherwise it is reported loudly
# and the rest of the setup goes on (the registrar tests then skip and say why).
docker_log=/var/log/mesh-dockerd.log
require_docker="${MESH_REQUIRE_DOCKER:-${CI:+1}}"

docker_problem() {
    echo "bootstrap: Docker: $*" >&2
    if [ "${require_docker:-0}" = 1 ]; then
        echo "bootstrap: Docker is required here (MESH_REQUIRE_DOCKER=1 or CI set): stopping" >&2
        exit 1
    fi
    echo "bootstrap: continuing without Docker: the registrar's Docker tests will be skipped" >&2
}

docker_answers() {
    command -v docker >/dev/null 2>&1 && [ -n "$(docker version --format '{{.Server.Version}}' 2>/dev/null)" ]
}

busybox_is_static() {
    [ -x /bin/busybox ] && ! LC_ALL=C ldd /bin/busybox >/dev/null 2>&1
}

wait_for_docker() {  # $1: seconds
    local i
    for ((i = 0; i < $1 * 5; i++)); do
        docker_answers && return 0
        sleep 0.2
    done
    return 1
}

start_dockerd() {  # extra dockerd flags in "$@"; returns 0 once the daemon answers
    echo "bootstrap: starting dockerd --storage-driver=vfs $* (log: $docker_log)" >&2
    echo "=== $(date -u +%FT%TZ) bootstrap: dockerd --storage-driver=vfs $*" >>"$docker_log"
    setsid dockerd --storage-driver=vfs "$@" >>"$docker_log" 2>&1 </dev/null &
    local pid=$!
    local i
    for ((i = 0; i < 300; i++)); do
        docker_answers && return 0
        kill -0 "$pid" 2>/dev/null || return 1  # it exited: the log says why
        sleep 0.2
    done
    return 1
}

setup_docker() {
    local missing=()
    command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
    busybox_is_static || missing+=(busybox-static)
    if [ "${#missing[@]}" -gt 0 ]; then
        if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
            local apt_log
            apt_log="$(mktemp)"
            echo "bootstrap: installing ${missing[*]}" >&2
            if ! { apt-get update -qq \
                && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"; } \
                >"$apt_log" 2>&1; then
                cat "$apt_log" >&2
                rm -f "$apt_log"
                docker_problem "could not install ${missing[*]}"
                return 0
            fi
            rm -f "$apt_log"
        else
            docker_problem "missing ${missing[*]} (as root: apt-get install docker.io busybox-static)"
            return 0
        fi
    fi
    docker_answers && return 0
    if [ -n "${DOCKER_HOST:-}" ] && [ "${DOCKER_HOST}" != "unix:///var/run/docker.sock" ]; then
        docker_problem "no daemon answers at DOCKER_HOST=$DOCKER_HOST (not starting a local one)"
        return 0
    fi
    if [ "$(id -u)" != 0 ]; then
        docker_problem "no daemon answers and starting dockerd needs root"
        return 0
    fi
    if [ -f /var/run/docker.pid ] && kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; then
        # A daemon is starting (or stuck): give it time rather than start a second one.
        wait_for_docker 60 && return 0
        docker_problem "a dockerd process runs but does not answer within 60 s (see $docker_log)"
        return 0
    fi
    start_dockerd && return 0
    # Kernels or sandboxes without the netfilter Docker wants: published ports still work through
    # docker-proxy (what the tests use, on 127.0.0.1), containers just lose outbound NAT.
    tail -n 20 "$docker_log" >&2 || true
    echo "bootstrap: dockerd did not come up; retrying without iptables" >&2
    start_dockerd --iptables=false && return 0
    tail -n 40 "$docker_log" >&2 || true
    docker_problem "dockerd did not start (log above, full log in $docker_log)"
}

setup_docker

stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -f "$stamp" ]; then
    [ -x .venv/bin/python ] || "$python" -m venv .venv
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e '.[test]'
    rm -f .venv/.installed-*
    touch "$stamp"
fi
