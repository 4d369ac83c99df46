#!/bin/bash
# A Debian sid chroot with CPython 3.14 and 3.15, for `make test-matrix`.
#
#   tools/sid-chroot.sh setup          create it if it is not there (idempotent)
#   tools/sid-chroot.sh status         exit 0 if it is ready, 1 if not
#   tools/sid-chroot.sh run CMD ARG..  run a command in it, from the current directory
#
# Debian 12's glibc (2.36) is too old for sid's python3.14/python3.15
# (they need >= 2.38), and multiprocessing's spawn, forkserver and resource
# tracker start sys.executable, so the interpreters run in a chroot rather
# than from extracted packages. Everything comes from Debian's archive, with
# Debian 12's debootstrap (downloaded and unpacked, not installed).
#
# The chroot lives outside the source tree, in $FERROSHM_SID
# (/var/cache/ferroshm/sid by default), so that a fresh clone reuses it;
# `setup` creates it only when its stamp file is missing or lists other
# packages (about 2 minutes, 1.1 GB). Root only. Delete the directory to
# start over.
#
# `run` enters a private mount namespace (nothing it mounts is seen outside,
# and everything goes away with the command) holding: the chroot bound onto
# itself (a chroot whose / is not a mount point cannot unshare again inside),
# proc, a minimal /dev with its own devpts and a private tmpfs /dev/shm (no
# segment is shared with the host or another run), a tmpfs /tmp, the source
# tree at the same path, and the host's Rust toolchain (~/.rustup read-only,
# ~/.cargo) at the same paths. The host's CA bundle is copied in and named by
# PIP_CERT, SSL_CERT_FILE and CARGO_HTTP_CAINFO (the host trusts certificates
# sid's bundle lacks), and resolv.conf is copied from the host. The command
# gets a clean environment (HOME=/root, PATH with ~/.cargo/bin first, the
# variables listed in PASS_ENV) and SIGINT/SIGQUIT at their defaults: a
# background job of a non-interactive shell starts with SIGINT ignored, which
# the suite's signal tests would inherit.
set -euo pipefail

ROOT=${FERROSHM_SID:-/var/cache/ferroshm/sid}
MIRROR=${FERROSHM_SID_MIRROR:-http://deb.debian.org/debian}
PACKAGES="python3.14-venv python3.14-dev libpython3.14-testsuite python3.15-venv python3.15-dev libpython3.15-testsuite gcc libc6-dev strace"
STAMP=$ROOT/.ferroshm-sid
SRC=$(cd "$(dirname "$0")/.." && pwd -P)
# Host variables a command in the chroot sees (if set).
PASS_ENV="CI TERM LANG MATRIX_PYTHONS FERROSHM_SUBSTITUTE FERROSHM_FUZZ_EXAMPLES PYTEST_ADDOPTS CARGO_TARGET_DIR"
CARGO_DIR=${CARGO_HOME:-$HOME/.cargo}
RUSTUP_DIR=${RUSTUP_HOME:-$HOME/.rustup}

log() { echo "[sid-chroot] $*" >&2; }

need_root() {
    [ "$(id -u)" -eq 0 ] || { log "must run as root (debootstrap, chroot and mounts)"; exit 1; }
}

ready() { [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$PACKAGES" ]; }

# Debian 12's debootstrap, unpacked into $1 (apt's lists are refreshed once
# if the package is not known yet, as on a fresh machine).
fetch_debootstrap() {
    local dir=$1
    if ! (cd "$dir" && apt-get download -qq debootstrap 2>/dev/null); then
        apt-get -o DPkg::Lock::Timeout=600 update -qq
        (cd "$dir" && apt-get download -qq debootstrap)
    fi
    dpkg-deb -x "$dir"/debootstrap_*.deb "$dir/dbs"
}

setup() {
    need_root
    mkdir -p "$(dirname "$ROOT")"
    # One setup at a time (two CI runs, or two make targets).
    exec 9>"$ROOT.lock"
    flock 9
    if ready; then
        log "$ROOT is ready (reused)"
        return 0
    fi
    local start=$SECONDS
    if [ ! -x "$ROOT/usr/bin/apt-get" ] || [ ! -f "$ROOT/.debootstrap-done" ]; then
        tmp=$(mktemp -d)
        trap 'rm -rf "$tmp"' EXIT
        fetch_debootstrap "$tmp"
        rm -rf "$ROOT.partial"
        log "debootstrap sid into $ROOT (minbase, $MIRROR)"
        # Its own mount namespace: the proc and sys debootstrap mounts in the
        # target go away with it.
        DEBOOTSTRAP_DIR=$tmp/dbs/usr/share/debootstrap unshare -m --propagation private \
            "$tmp/dbs/usr/sbin/debootstrap" --variant=minbase sid "$ROOT.partial" "$MIRROR" >&2
        rm -rf "$ROOT"
        mv "$ROOT.partial" "$ROOT"
        touch "$ROOT/.debootstrap-done"
        log "debootstrap done in $((SECONDS - start)) s"
    fi
    # sid's Release files are past their Valid-Until here (the host has the
    # same override in its apt configuration).
    printf 'Acquire::Check-Valid-Until "false";\nAcquire::Check-Date "false";\n' \
        > "$ROOT/etc/apt/apt.conf.d/99ferroshm-no-check-valid-until"
    log "installing: $PACKAGES"
    run_in bash -c "apt-get -qq update && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $PACKAGES && apt-get clean" >&2
    echo "$PACKAGES" > "$STAMP"
    log "$ROOT ready in $((SECONDS - start)) s"
}

# Runs "$@" in the chroot (see the header). The script runs itself again in
# a new mount namespace, where `enter` does the mounts.
run_in() {
    need_root
    [ -x "$ROOT/usr/bin/env" ] || { log "no chroot at $ROOT: run '$0 setup'"; exit 1; }
    # (fd 9, the setup lock, is not for the command)
    env --default-signal=INT,QUIT unshare -m --propagation private --fork "$0" __enter "$PWD" "$@" 9>&-
}

enter() {
    local cwd=$1
    shift
    mount --bind "$ROOT" "$ROOT"
    mount -t proc proc "$ROOT/proc"
    mount -t tmpfs -o mode=755,nosuid tmpfs "$ROOT/dev"
    local node
    for node in null zero full random urandom tty; do
        touch "$ROOT/dev/$node"
        mount --bind "/dev/$node" "$ROOT/dev/$node"
    done
    ln -s /proc/self/fd "$ROOT/dev/fd"
    ln -s /proc/self/fd/0 "$ROOT/dev/stdin"
    ln -s /proc/self/fd/1 "$ROOT/dev/stdout"
    ln -s /proc/self/fd/2 "$ROOT/dev/stderr"
    mkdir "$ROOT/dev/shm" "$ROOT/dev/pts"
    mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$ROOT/dev/shm"
    mount -t devpts -o newinstance,ptmxmode=0666,mode=620 devpts "$ROOT/dev/pts"
    ln -s pts/ptmx "$ROOT/dev/ptmx"
    mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$ROOT/tmp"
    local dir
    for dir in "$SRC" "$CARGO_DIR" "$RUSTUP_DIR"; do
        [ -d "$dir" ] || continue
        mkdir -p "$ROOT$dir"
        mount --bind "$dir" "$ROOT$dir"
    done
    [ ! -d "$RUSTUP_DIR" ] || mount -o remount,bind,ro "$ROOT$RUSTUP_DIR"
    # The working directory may be elsewhere than the source tree (a venv in
    # target/ is inside it; anything else must be bound too).
    case "$cwd/" in
        "$SRC"/*) ;;
        *) mkdir -p "$ROOT$cwd" && mount --bind "$cwd" "$ROOT$cwd" ;;
    esac
    cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf"
    local ca=${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}
    local envs=(HOME=/root "PATH=$CARGO_DIR/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    [ ! -d "$CARGO_DIR" ] || envs+=("CARGO_HOME=$CARGO_DIR")
    [ ! -d "$RUSTUP_DIR" ] || envs+=("RUSTUP_HOME=$RUSTUP_DIR")
    if [ -f "$ca" ]; then
        cp -L "$ca" "$ROOT/etc/ferroshm-host-ca.crt"
        local c=/etc/ferroshm-host-ca.crt
        envs+=("PIP_CERT=$c" "SSL_CERT_FILE=$c" "CARGO_HTTP_CAINFO=$c" "REQUESTS_CA_BUNDLE=$c")
    fi
    local v
    for v in $PASS_ENV; do
        [ -z "${!v+x}" ] || envs+=("$v=${!v}")
    done
    exec chroot "$ROOT" /usr/bin/env -i "${envs[@]}" /bin/sh -c 'cd "$1" && shift && exec "$@"' sh "$cwd" "$@"
}

case "${1:-}" in
    setup) setup ;;
    status) ready ;;
    run)
        shift
        [ $# -gt 0 ] || { log "usage: $0 run CMD [ARG...]"; exit 2; }
        ready || { log "$ROOT is not set up: run '$0 setup'"; exit 1; }
        run_in "$@"
        ;;
    __enter)
        shift
        enter "$@"
        ;;
    *)
        sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//' >&2
        exit 2
        ;;
esac
