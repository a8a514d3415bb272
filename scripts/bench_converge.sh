#!/usr/bin/env bash
# Print how long the playbooks take on the running demo stack (make demo first):
# a converge that changes nothing, the same in --check mode, and a deployments
# run that changes nothing. Figures only; nothing here asserts a time.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH" ANSIBLE_CONFIG="$PWD/ansible.cfg"
inv=inventories/demo/hosts.yml
docker inspect monstack-demo-monitor >/dev/null 2>&1 || { echo "no demo stack: run make demo first" >&2; exit 1; }

measure() {  # measure LABEL ARGS...
  local label="$1" start end changed; shift
  start=$(date +%s.%N)
  out=$(ansible-playbook -i "$inv" "$@" 2>&1) || { echo "$out" | tail -20; exit 1; }
  end=$(date +%s.%N)
  changed=$(echo "$out" | grep -oE 'changed=[0-9]+' | awk -F= '{s += $2} END {print s + 0}')
  tasks=$(echo "$out" | grep -cE '^TASK \[')
  printf '%-44s %6.1f s  %4d tasks  changed=%s\n' "$label" "$(awk -v a="$start" -v b="$end" 'BEGIN {print b - a}')" "$tasks" "$changed"
}

measure "site.yml, nothing to change" site.yml
measure "site.yml --check" site.yml --check
measure "deployments.yml, nothing to change" playbooks/deployments.yml \
  -e deployment_records_dir="$PWD/inventories/demo/deployments"
