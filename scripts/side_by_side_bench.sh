#!/usr/bin/env bash
# This package beside the standard collection, in one run, on the same image
# and the same kind of hosts (our copy of ../shared/tools/side-by-side-bench.sh):
#   anchor  prometheus.prometheus (a git dir of prometheus-community/ansible,
#           ANCHOR_GIT): node_exporter on every host, prometheus + alertmanager
#           on the first
#   subset  this package's site.yml with --skip-tags cadvisor,grafana,blackbox_exporter: the same components
#   full    this package's whole site.yml (adds cAdvisor on every host)
# Each: fresh systemd containers, an empty download cache, a first converge,
# then a rerun. Prints seconds, the changed count over all hosts and the
# ok/changed/skipped of the server host (first host) for each run.
#
# Usage: scripts/side_by_side_bench.sh [CHECKOUT]   (default: this checkout; make setup first)
#   HOSTS=N          hosts per run (default 3)
#   ONLY="anchor subset full"
#   ANCHOR_GIT       default /work/.mirror/prometheus-community+ansible/repo when it exists
#   W                work dir (default /tmp/sbs); SBS_PREFIX container name prefix
#                    (default none: ab-, sb-, fb-), SBS_NET network (sbsnet),
#                    SBS_PORT loopback port of the anchor's mirror (8099)
# Versions and mirror: inventories/demo/group_vars/all/main.yml and $MONSTACK_CACHE/mirror.
set -euo pipefail
P=$(cd "${1:-$(dirname "$0")/..}" && pwd)
N=${HOSTS:-3}
ONLY=${ONLY:-"anchor subset full"}
IMAGE=${IMAGE:-monstack-test:debian12}
VENV=$P/.venv
W=${W:-/tmp/sbs}
SNAP=${ANCHOR_GIT:-}
if [ -z "$SNAP" ] && [ -d /work/.mirror/prometheus-community+ansible/repo ]; then
  SNAP=/work/.mirror/prometheus-community+ansible/repo
fi
X=${SBS_PREFIX:-}
NET=${SBS_NET:-sbsnet}
PORT=${SBS_PORT:-8099}
CACHE=${MONSTACK_CACHE:-/var/cache/monstack}
GV=$P/inventories/demo/group_vars/all/main.yml
export ANSIBLE_NOCOLOR=1
mkdir -p "$W"
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"

version() { # version NAME: the NAME_version of the demo group_vars
  sed -nE "s/^$1_version: *\"?([^\" ]+)\"?.*/\1/p" "$GV"
}
hosts() { for i in $(seq 1 "$N"); do echo "$X$1-h$i"; done; }
# shellcheck disable=SC2046
fresh() { start_hosts "$NET" "$IMAGE" $(hosts "$1"); } # fresh PREFIX: N new systemd containers
# shellcheck disable=SC2046
clean() { remove_hosts $(hosts "$1"); }
timed() { # timed LABEL SERVER DIR CMD...: prints seconds, changed (all hosts), server ok/changed/skipped
  local label=$1 server=$2 dir=$3 s e ch srv
  shift 3
  s=$(date +%s.%N)
  (cd "$dir" && "$@") >"$W/$label.log" 2>&1 || { echo "$label FAILED"; tail -30 "$W/$label.log"; return 1; }
  e=$(date +%s.%N)
  ch=$(sed -n '/^PLAY RECAP/,$p' "$W/$label.log" | grep -oE 'changed=[0-9]+' | awk -F= '{s+=$2} END {print s+0}')
  srv=$(sed -n '/^PLAY RECAP/,$p' "$W/$label.log" |
    sed -nE "s/^$server +: ok=([0-9]+) +changed=([0-9]+) +unreachable=[0-9]+ +failed=[0-9]+ +skipped=([0-9]+).*/ok=\1 changed=\2 skipped=\3/p")
  printf '%-18s %6.1f s  changed=%-4s server %s: %s\n' "$label" "$(awk -v a="$s" -v b="$e" 'BEGIN {print b - a}')" "$ch" "$server" "$srv"
}

PV=$(version prometheus)
AV=$(version alertmanager)
NV=$(version node_exporter)

# ---- anchor
if [[ " $ONLY " == *" anchor "* ]]; then
  if [ -z "$SNAP" ] || ! git --git-dir="$SNAP" rev-parse HEAD >/dev/null 2>&1; then
    echo "set ANCHOR_GIT to a git dir of prometheus-community/ansible (or ONLY=\"subset full\")"
    exit 2
  fi
  A=$W/anchor
  rm -rf "$A"
  mkdir -p "$A/collections/ansible_collections/prometheus/prometheus" "$A/mirror" "$A/cache"
  git --git-dir="$SNAP" archive HEAD | tar -x -C "$A/collections/ansible_collections/prometheus/prometheus"
  M=$CACHE/mirror/prometheus
  for pair in "prometheus:$PV" "alertmanager:$AV" "node_exporter:$NV"; do
    n=${pair%%:*} v=${pair##*:}
    cp "$M/$n/releases/download/v$v/$n-$v.linux-amd64.tar.gz" "$A/mirror/"
    (cd "$A/mirror" && sha256sum "$n-$v.linux-amd64.tar.gz" >"sha256sums-$n.txt")
  done
  (cd "$A/mirror" && exec python3 -m http.server "$PORT" --bind 127.0.0.1 >/dev/null 2>&1) &
  HTTP=$!
  trap 'kill $HTTP 2>/dev/null || true' EXIT
  srv=$(hosts ab | head -1)
  {
    echo "all:"
    echo "  vars: {ansible_connection: community.docker.docker, ansible_python_interpreter: /usr/bin/python3, ansible_become_method: ansible.builtin.su}"
    echo "  children:"
    echo "    monitor: {hosts: {$srv: {}}}"
    echo "    apps:"
    echo "      hosts:"
    for h in $(hosts ab); do echo "        $h: {}"; done
  } >"$A/inventory.yml"
  targets=$(for h in $(hosts ab); do printf '"%s:9100",' "$h"; done)
  targets=${targets%,}
  U=http://127.0.0.1:$PORT
  # The collection's controller caches default to /tmp/<name>-linux-amd64: one of our own instead.
  cat >"$A/site.yml" <<PB
- hosts: all
  become: true
  vars:
    node_exporter_version: $NV
    node_exporter_binary_url: "$U/node_exporter-$NV.linux-amd64.tar.gz"
    node_exporter_checksums_url: "$U/sha256sums-node_exporter.txt"
    node_exporter_local_cache_path: "$A/cache/node_exporter/$NV"
  roles: [prometheus.prometheus.node_exporter]
- hosts: monitor
  become: true
  vars:
    prometheus_version: $PV
    prometheus_binary_url: "$U/prometheus-$PV.linux-amd64.tar.gz"
    prometheus_checksums_url: "$U/sha256sums-prometheus.txt"
    prometheus_local_cache_path: "$A/cache/prometheus/$PV"
    alertmanager_version: $AV
    alertmanager_binary_url: "$U/alertmanager-$AV.linux-amd64.tar.gz"
    alertmanager_checksums_url: "$U/sha256sums-alertmanager.txt"
    alertmanager_local_cache_path: "$A/cache/alertmanager/$AV"
    alertmanager_receivers: [{name: default, webhook_configs: [{url: "http://127.0.0.1:5001/"}]}]
    alertmanager_route: {receiver: default}
    prometheus_alertmanager_config: [{static_configs: [{targets: ["$srv:9093"]}]}]
    prometheus_targets: {node: [{targets: [$targets]}]}
  roles: [prometheus.prometheus.prometheus, prometheus.prometheus.alertmanager]
PB
  printf '[defaults]\ncollections_path = %s/collections:%s\ninventory = inventory.yml\nforks = 20\n[connection]\npipelining = true\n' \
    "$A" "$(ls -d "$VENV"/lib/python3*/site-packages)" >"$A/ansible.cfg"
  fresh ab
  # Debian's Alertmanager build reads its templates from there (as prepare.yml does for us).
  docker exec "$srv" mkdir -p /usr/share/prometheus
  docker cp "$CACHE/extras/usr/share/prometheus/alertmanager" "$srv:/usr/share/prometheus/"
  timed anchor-converge "$srv" "$A" env ANSIBLE_CONFIG="$A/ansible.cfg" "$VENV/bin/ansible-playbook" site.yml
  timed anchor-rerun "$srv" "$A" env ANSIBLE_CONFIG="$A/ansible.cfg" "$VENV/bin/ansible-playbook" site.yml
  clean ab
fi

# ---- this package
ours() { # ours LABEL PREFIX EXTRA-ARGS...
  local label=$1 pre=$2 srv h
  shift 2
  local I=$W/$label
  rm -rf "$I"
  mkdir -p "$I"
  srv=$(hosts "$pre" | head -1)
  {
    echo "all:"
    echo "  vars: {ansible_connection: community.docker.docker, monstack_environment: bench}"
    echo "  hosts:"
    for h in $(hosts "$pre"); do echo "    $h:"; done
    echo "  children:"
    echo "    prometheus: {hosts: {$srv: }}"
    echo "    alertmanager: {hosts: {$srv: }}"
    echo "    grafana: {hosts: {}}"
  } >"$I/hosts.yml"
  cp -r "$P/inventories/demo/group_vars" "$I/"
  sed -i 's#http://monstack-demo-app1:9095/alerts#http://127.0.0.1:5001/#' "$I/group_vars/all/main.yml"
  fresh "$pre"
  (cd "$P" && ANSIBLE_CONFIG="$P/ansible.cfg" "$VENV/bin/ansible-playbook" -i "$I/hosts.yml" molecule/shared/prepare.yml >/dev/null)
  # An empty controller download cache, as the anchor has.
  export MONSTACK_DOWNLOAD_CACHE=$I/downloads
  timed "$label-converge" "$srv" "$P" env ANSIBLE_CONFIG="$P/ansible.cfg" "$VENV/bin/ansible-playbook" -i "$I/hosts.yml" site.yml "$@"
  timed "$label-rerun" "$srv" "$P" env ANSIBLE_CONFIG="$P/ansible.cfg" "$VENV/bin/ansible-playbook" -i "$I/hosts.yml" site.yml "$@"
  clean "$pre"
}
if [[ " $ONLY " == *" subset "* ]]; then ours subset sb --skip-tags cadvisor,grafana,blackbox_exporter; fi
if [[ " $ONLY " == *" full "* ]]; then ours full fb; fi
echo "hosts=$N image=$IMAGE prometheus=$PV alertmanager=$AV node_exporter=$NV"
