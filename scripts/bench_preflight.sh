#!/usr/bin/env bash
# What the preflight costs on the controller as the inventory grows.
#
# For each size N of SIZES (default "20 200 1000"), an inventory shaped like
# the demo's (scripts/lib.sh bench_inventory: the first host runs Prometheus
# and Alertmanager, the N-1 others are application hosts, the demo's
# group_vars), then playbooks/preflight.yml against it. No host is contacted:
# the preflight runs on the controller only. Prints, per size, the exit code,
# the wall-clock seconds and the controller's CPU seconds (ansible-playbook
# and its workers, user + system). Figures only; nothing here asserts a time.
#
#   scripts/bench_preflight.sh
#   SIZES="20 200" scripts/bench_preflight.sh
# Settings: BENCH_DIR (inventories and logs, default /tmp/bench-preflight).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export PATH="$ROOT/.venv/bin:$PATH" ANSIBLE_NOCOLOR=1 ANSIBLE_FORCE_COLOR=0 ANSIBLE_CONFIG=$ROOT/ansible.cfg
W=${BENCH_DIR:-/tmp/bench-preflight}
# shellcheck source=scripts/lib.sh
. "$ROOT/scripts/lib.sh"
[ -x /usr/bin/time ] || { echo "needs /usr/bin/time (Debian package time)" >&2; exit 1; }

mkdir -p "$W"
printf '%6s %4s %9s %9s\n' hosts rc seconds cpu_s
for n in ${SIZES:-20 200 1000}; do
  case "$n" in '' | *[!0-9]* | 0) echo "SIZES: $n is not a number of hosts" >&2; exit 2 ;; esac
  rm -rf "$W/inv-$n"
  # shellcheck disable=SC2046
  bench_inventory "$W/inv-$n" $(for i in $(seq 1 "$n"); do echo "bp-h$i"; done)
  rc=0
  /usr/bin/time -f '%e %U %S' -o "$W/time-$n" \
    ansible-playbook -i "$W/inv-$n/hosts.yml" playbooks/preflight.yml >"$W/run-$n.log" 2>&1 || rc=$?
  read -r secs user sys <"$W/time-$n"
  printf '%6s %4s %9s %9s\n' "$n" "$rc" "$secs" "$(awk -v u="$user" -v s="$sys" 'BEGIN {printf "%.1f", u + s}')"
done
