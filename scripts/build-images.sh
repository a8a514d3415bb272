#!/usr/bin/env bash
# Build the test-host images: Debian 11 (bullseye), 12 (bookworm) and 13 (trixie)
# root file systems with systemd as PID 1, made with debootstrap and `docker
# import` (no image registry is needed or used). Each runs an SSH server (host
# keys made at first boot, one set per container, as on a fresh VM) and has
# sudo, so tests can reach them the way operators reach servers. systemd-journal-remote
# is there for the journal role (tests reach no package mirror).
#
# Images are tagged with a hash of this script, so a rerun reuses them and a
# change to the package list rebuilds them.
#
# Usage: scripts/build-images.sh [bullseye] [bookworm] [trixie]     (default: all)
set -euo pipefail

MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
PACKAGES="systemd,systemd-sysv,dbus,python3,python3-apt,ca-certificates,curl,iproute2,procps,cron,tzdata,sudo,openssh-server,systemd-journal-remote"
HASH="$(sha256sum "$0" | cut -c1-10)"
WORKDIR="${MONSTACK_CACHE:-/var/cache/monstack}/rootfs"
suites=("$@")
[ "${#suites[@]}" -gt 0 ] || suites=(bullseye bookworm trixie)

image_for() {
  case "$1" in
    bullseye) echo "monstack-test:debian11-${HASH}" ;;
    bookworm) echo "monstack-test:debian12-${HASH}" ;;
    trixie) echo "monstack-test:debian13-${HASH}" ;;
    *) echo "unknown suite $1" >&2; return 1 ;;
  esac
}

build_one() {
  local suite="$1" image rootfs
  image="$(image_for "$suite")"
  if docker image inspect "$image" >/dev/null 2>&1; then
    echo "image $image: cached"
    return 0
  fi
  rootfs="$WORKDIR/$suite"
  rm -rf "$rootfs"
  mkdir -p "$rootfs"
  echo "image $image: debootstrap $suite (a few minutes)"
  debootstrap --variant=minbase --include="$PACKAGES" "$suite" "$rootfs" "$MIRROR" \
    >"$WORKDIR/$suite.log" 2>&1 || { tail -20 "$WORKDIR/$suite.log"; return 1; }
  # Behave like a minimal VM: no units that need hardware, a machine-id per container.
  : >"$rootfs/etc/machine-id"
  rm -f "$rootfs/var/cache/apt/archives/"*.deb
  for unit in getty.target systemd-udevd.service systemd-udev-trigger.service \
      systemd-modules-load.service sys-kernel-debug.mount sys-kernel-tracing.mount \
      systemd-remount-fs.service; do
    ln -sf /dev/null "$rootfs/etc/systemd/system/$unit"
  done
  echo "deb $MIRROR $suite main" >"$rootfs/etc/apt/sources.list"
  # SSH: no host keys baked into the image; each container makes its own at
  # first boot. Password logins off: keys only, as on a hardened server.
  rm -f "$rootfs"/etc/ssh/ssh_host_*
  mkdir -p "$rootfs/etc/systemd/system/ssh.service.d"
  printf '[Service]\nExecStartPre=\nExecStartPre=/usr/bin/ssh-keygen -A\nExecStartPre=/usr/sbin/sshd -t\n' \
    >"$rootfs/etc/systemd/system/ssh.service.d/host-keys.conf"
  printf 'PasswordAuthentication no\nKbdInteractiveAuthentication no\nUseDNS no\n' \
    >"$rootfs/etc/ssh/sshd_config.d/monstack-test.conf" 2>/dev/null || \
    printf 'PasswordAuthentication no\nUseDNS no\n' >>"$rootfs/etc/ssh/sshd_config"
  tar -C "$rootfs" -c . | docker import \
    -c 'CMD ["/lib/systemd/systemd"]' -c 'ENV container=docker' - "$image" >/dev/null
  rm -rf "$rootfs"
  echo "image $image: built"
}

mkdir -p "$WORKDIR"
pids=()
for suite in "${suites[@]}"; do
  build_one "$suite" &
  pids+=($!)
done
rc=0
for pid in "${pids[@]}"; do wait "$pid" || rc=1; done
# Stable aliases used by molecule and the demo, pointing at the current build.
for suite in "${suites[@]}"; do
  image="$(image_for "$suite")"
  case "$suite" in
    bullseye) docker tag "$image" monstack-test:debian11 ;;
    bookworm) docker tag "$image" monstack-test:debian12 ;;
    trixie) docker tag "$image" monstack-test:debian13 ;;
  esac
done
exit "$rc"
