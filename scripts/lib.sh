#!/usr/bin/env bash
# Shell helpers shared by the scripts that start test hosts (source it).

# The docker run options that run systemd in a container on this kind of machine.
SYSTEMD_OPTS=(--cap-add SYS_ADMIN --cap-add NET_ADMIN --security-opt seccomp=unconfined
  --security-opt apparmor=unconfined --cgroupns=host -v /sys/fs/cgroup:/sys/fs/cgroup:rw
  --tmpfs /run --tmpfs /run/lock)
export SYSTEMD_OPTS

# wait_systemd HOST...: wait (up to 60 s each) until systemd in each container has booted.
wait_systemd() {
  local host state
  for host in "$@"; do
    for _ in $(seq 1 60); do
      state=$(docker exec "$host" systemctl is-system-running 2>/dev/null || true)
      case "$state" in running | degraded) break ;; esac
      sleep 1
    done
  done
}
