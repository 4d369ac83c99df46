#!/bin/sh
# Install the cross toolchain that `make test-windows`, `make check-macos`
# and `make build-windows` use (see README "Platforms"): Debian's newer Rust
# with the standard library's source (for -Zbuild-std) and clippy, the MinGW linker and
# wine (`wine` gives the /usr/bin/wine64 launcher). Idempotent: does nothing when everything is there. Needs root (CI
# runs as root) or sudo.
set -eu
pkgs="rustc-web cargo-web rust-web-src rust-web-clippy gcc-mingw-w64-x86-64 wine wine64"
missing=""
for p in $pkgs; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
sudo=""
[ "$(id -u)" -eq 0 ] || sudo=sudo
echo "installing:$missing"
# Another apt run may hold the lock for a while: wait for it rather than fail.
$sudo apt-get -o DPkg::Lock::Timeout=600 update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends $missing
