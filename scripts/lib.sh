#!/usr/bin/env bash
# Shell helpers shared by the scripts that start test hosts (source it).

# The docker run options that run systemd in a container on this kind of machine.
SYSTEMD_OPTS=(--cap-add SYS_ADMIN --cap-add NET_ADMIN --security-opt seccomp=unconfined
  --security-opt apparmor=unconfined --cgroupns=host -v /sys/fs/cgroup:/sys/fs/cgroup:rw
  --tmpfs /run --tmpfs /run/lock)
export SYSTEMD_OPTS

# These hosts are containers reached with `docker exec`, not SSH: host key
# checking (on in ansible.cfg, for real hosts) is turned off for the scripts'
# own runs, as in the tests' configuration.
export ANSIBLE_HOST_KEY_CHECKING=False

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

# remove_hosts HOST...: remove the containers HOST... (missing ones are fine).
remove_hosts() {
  local host
  for host in "$@"; do docker rm -f "$host" >/dev/null 2>&1 || true; done
}

# start_hosts NET IMAGE HOST...: new systemd containers HOST... (any old ones of
# those names removed) on docker network NET (made if missing), booted.
start_hosts() {
  local net=$1 image=$2 host
  shift 2
  remove_hosts "$@"
  docker network inspect "$net" >/dev/null 2>&1 || docker network create "$net" >/dev/null
  for host in "$@"; do
    docker run -d --name "$host" --hostname "$host" --network "$net" "${SYSTEMD_OPTS[@]}" \
      "$image" /lib/systemd/systemd >/dev/null
  done
  wait_systemd "$@"
}

# bench_inventory DIR HOST...: an inventory in DIR shaped like the demo's for
# the test hosts HOST... (docker connection): the first runs Prometheus and
# Alertmanager, the others are application hosts; the demo's group_vars, with
# the alert receiver pointed at an address every host has (the demo's webhook
# receiver, demo_app.yml, is not part of site.yml). Root: this checkout.
bench_inventory() {
  local dir=$1 host
  shift
  mkdir -p "$dir"
  {
    echo "all:"
    echo "  vars:"
    echo "    ansible_connection: community.docker.docker"
    echo "    monstack_environment: bench"
    echo "  hosts:"
    for host in "$@"; do echo "    $host:"; done
    echo "  children:"
    echo "    prometheus: {hosts: {$1: }}"
    echo "    alertmanager: {hosts: {$1: }}"
    echo "    grafana: {hosts: {}}"
    echo "    apps:"
    echo "      hosts:"
    for host in "${@:2}"; do echo "        $host:"; done
  } >"$dir/hosts.yml"
  cp -r "$(dirname "${BASH_SOURCE[0]}")/../inventories/demo/group_vars" "$dir/"
  sed -i 's#http://monstack-demo-app1:9095/alerts#http://127.0.0.1:5001/#' "$dir/group_vars/all/main.yml"
}

# need_image IMAGE: stop (exit 1) unless a docker engine answers and has IMAGE.
need_image() {
  docker info >/dev/null 2>&1 || { echo "no docker engine answers (make setup)" >&2; exit 1; }
  docker image inspect "$1" >/dev/null 2>&1 || { echo "no image $1 (make setup)" >&2; exit 1; }
}
