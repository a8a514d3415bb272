#!/usr/bin/env bash
# Demo stack on three local systemd containers that behave like bare VMs.
#   scripts/demo.sh up     create the hosts, run site.yml, print the URLs
#   scripts/demo.sh down   remove the hosts
# Ports are published on 127.0.0.1 only. Set GRAFANA_ARTIFACT=<.deb> to add
# Grafana (no Grafana binary can be downloaded on this machine).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH" ANSIBLE_CONFIG="$PWD/ansible.cfg"
NET=monstack-demo SUBNET=10.231.1.0/24 GATEWAY=10.231.1.1
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
declare -A IMAGE=([monstack-demo-monitor]=monstack-test:debian12 [monstack-demo-app1]=monstack-test:debian12
  [monstack-demo-app2]=monstack-test:debian13)
declare -A PORTS=([monstack-demo-monitor]="9090 9093 9100 8080 3000" [monstack-demo-app1]="" [monstack-demo-app2]="")

down() {
  docker rm -f "${!IMAGE[@]}" >/dev/null 2>&1 || true
  docker network rm "$NET" >/dev/null 2>&1 || true
  echo "demo hosts removed"
}

up() {
  # A fixed subnet: its gateway, the docker host, is in the demo inventory's monstack_ip_allow.
  docker network inspect "$NET" >/dev/null 2>&1 ||
    docker network create --subnet "$SUBNET" --gateway "$GATEWAY" "$NET" >/dev/null
  gw=$(docker network inspect -f '{{range .IPAM.Config}}{{.Gateway}}{{end}}' "$NET")
  [ "$gw" = "$GATEWAY" ] ||
    { echo "network $NET has gateway '$gw', not $GATEWAY (inventories/demo): run scripts/demo.sh down first" >&2; exit 1; }
  for host in "${!IMAGE[@]}"; do
    if [ "$(docker inspect -f '{{.State.Running}}' "$host" 2>/dev/null)" != "true" ]; then
      docker rm -f "$host" >/dev/null 2>&1 || true
      publish=()
      for port in ${PORTS[$host]}; do publish+=(-p "127.0.0.1:$port:$port"); done
      docker run -d --name "$host" --hostname "$host" --network "$NET" "${SYSTEMD_OPTS[@]}" \
        "${publish[@]}" "${IMAGE[$host]}" /lib/systemd/systemd >/dev/null
      echo "started $host"
    fi
  done
  wait_systemd "${!IMAGE[@]}"
  extra=()
  if [ -n "${GRAFANA_ARTIFACT:-}" ]; then
    extra+=(-e "{\"grafana_install_method\": \"local\", \"grafana_local_package\": \"$GRAFANA_ARTIFACT\"}")
    extra+=(-i inventories/demo/grafana.yml)
  fi
  ansible-playbook -i inventories/demo/hosts.yml molecule/shared/prepare.yml
  ansible-playbook -i inventories/demo/hosts.yml "${extra[@]}" playbooks/demo_app.yml site.yml
  ansible-playbook -i inventories/demo/hosts.yml "${extra[@]}" playbooks/deployments.yml \
    -e deployment_records_dir="$PWD/inventories/demo/deployments"
  cat <<EOT

Demo stack is up (published on 127.0.0.1 only):
  Prometheus     http://127.0.0.1:9090/api/v1/targets   (Debian's build of Prometheus has no web UI; its API works)
                 http://127.0.0.1:9090/api/v1/alerts
                 http://127.0.0.1:9090/api/v1/query?query=rate(inference_requests_total[1m])
  Alertmanager   http://127.0.0.1:9093/api/v2/alerts    (cluster: http://127.0.0.1:9093/api/v2/status)
  node_exporter  http://127.0.0.1:9100/metrics
  cAdvisor       http://127.0.0.1:8080/metrics
EOT
  if [ -n "${GRAFANA_ARTIFACT:-}" ]; then
    echo "  Grafana        http://127.0.0.1:3000/"
  else
    echo "  Grafana        skipped: no Grafana binary is available here (set GRAFANA_ARTIFACT=<.deb> and rerun)"
  fi
  echo "Remove with: scripts/demo.sh down"
}

case "${1:-up}" in
  up) up ;;
  down) down ;;
  *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
