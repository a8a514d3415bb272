#!/usr/bin/env bash
# What an added host costs on a no-change rerun, on ONE set of hosts.
#
# HOSTS (default 10) new systemd containers in the demo inventory's shape (the
# first host runs Prometheus and Alertmanager, the others are application
# hosts), prepared and converged once (not timed). Then, for the first 3 hosts
# and for all HOSTS, the median of REPS (default 3) no-change reruns of
#   site     site.yml as shipped;
#   floor    scripts/bench_scaling_floor.yml: the same, except that the
#            application hosts run the preflight and ONE module call instead
#            of the node_exporter and cAdvisor roles.
# Before the timed reruns of a size, one untimed run brings the server's
# targets to that inventory; the two variants' reruns then take turns. Prints,
# per variant: seconds, the ratio HOSTS / 3, and per added host the seconds,
# the controller's CPU (ansible-playbook and its workers) and the hosts' CPU
# (the containers' cgroups; the idle exporters' background included). Figures
# only; nothing here asserts a time.
#
#   scripts/bench_scaling.sh                 10 hosts against 3
#   HOSTS=6 REPS=5 scripts/bench_scaling.sh
# Settings: BENCH_PREFIX (container names, default bs), BENCH_NET (default
# bsnet), BENCH_DIR (logs, default /tmp/bench-scaling), IMAGE, KEEP=1 (leave
# the containers running).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export PATH="$ROOT/.venv/bin:$PATH" ANSIBLE_NOCOLOR=1 ANSIBLE_FORCE_COLOR=0 ANSIBLE_CONFIG=$ROOT/ansible.cfg
N=${HOSTS:-10}
R=${REPS:-3}
PRE=${BENCH_PREFIX:-bs}
NET=${BENCH_NET:-bsnet}
W=${BENCH_DIR:-/tmp/bench-scaling}
IMAGE=${IMAGE:-monstack-test:debian12}
# shellcheck source=scripts/lib.sh
. "$ROOT/scripts/lib.sh"

case "$N" in '' | *[!0-9]*) echo "HOSTS must be a number of hosts (4 or more)" >&2; exit 2 ;; esac
case "$R" in '' | *[!0-9]* | 0) echo "REPS must be a number of runs (1 or more)" >&2; exit 2 ;; esac
[ "$N" -ge 4 ] || { echo "HOSTS must be 4 or more (it is compared with 3 hosts)" >&2; exit 2; }
need_image "$IMAGE"
[ -x /usr/bin/time ] || { echo "needs /usr/bin/time (Debian package time)" >&2; exit 1; }
# The floor must import site.yml's plays but the exporters: stop if they drifted apart.
floor_plays=$(sed -nE 's#.*import_playbook: \.\./playbooks/([a-z_]+\.yml)$#\1#p' scripts/bench_scaling_floor.yml | grep -vx preflight.yml)
site_plays=$(sed -nE 's#.*import_playbook: ([a-z_]+\.yml)$#\1#p' playbooks/site.yml | grep -vx exporters.yml)
[ "$floor_plays" = "$site_plays" ] ||
  { echo "scripts/bench_scaling_floor.yml no longer imports what playbooks/site.yml does (but exporters.yml): update it" >&2; exit 1; }

hosts() { for i in $(seq 1 "$1"); do echo "$PRE-h$i"; done; }
# shellcheck disable=SC2046
clean() { remove_hosts $(hosts "$N"); }
[ "${KEEP:-0}" = 1 ] || trap clean EXIT
# shellcheck disable=SC2046
start_hosts "$NET" "$IMAGE" $(hosts "$N")
rm -rf "$W"
# shellcheck disable=SC2046
inventory() { bench_inventory "$W/inv-$1" $(hosts "$1"); }
inventory 3
inventory "$N"

echo "== $N hosts: prepare and first converge (not timed)" >&2
ansible-playbook -i "$W/inv-$N/hosts.yml" molecule/shared/prepare.yml >"$W/prepare.log" 2>&1 ||
  { tail -20 "$W/prepare.log" >&2; exit 1; }
ansible-playbook -i "$W/inv-$N/hosts.yml" site.yml >"$W/converge.log" 2>&1 ||
  { tail -20 "$W/converge.log" >&2; exit 1; }

# CPU nanoseconds of the N containers so far (cgroup v1 cpuacct or v2 cpu.stat)
host_cpu_ns() {
  local sum=0 id v
  for h in $(hosts "$N"); do
    id=$(docker inspect -f '{{.Id}}' "$h")
    if [ -r "/sys/fs/cgroup/cpuacct/docker/$id/cpuacct.usage" ]; then
      v=$(cat "/sys/fs/cgroup/cpuacct/docker/$id/cpuacct.usage")
    elif [ -r "/sys/fs/cgroup/system.slice/docker-$id.scope/cpu.stat" ]; then
      v=$(awk '$1 == "usage_usec" {print $2 * 1000}' "/sys/fs/cgroup/system.slice/docker-$id.scope/cpu.stat")
    else
      echo -1; return
    fi
    sum=$((sum + v))
  done
  echo "$sum"
}

# run KEY PLAYBOOK SIZE: one rerun; appends "wall controller_cpu host_cpu" to KEY.runs
run() {
  local key=$1 pb=$2 n=$3 s e c0 c1 rc=0
  c0=$(host_cpu_ns); s=$(date +%s.%N)
  /usr/bin/time -f '%U %S' -o "$W/$key.time" ansible-playbook -i "$W/inv-$n/hosts.yml" "$pb" >"$W/$key.log" 2>&1 || rc=$?
  e=$(date +%s.%N); c1=$(host_cpu_ns)
  if [ "$rc" -ne 0 ]; then echo "$key failed (rc $rc), log $W/$key.log" >&2; tail -15 "$W/$key.log" >&2; exit 1; fi
  if grep -qE 'changed=[1-9]' <(sed -n '/^PLAY RECAP/,$p' "$W/$key.log"); then
    echo "  note: $key changed something (not a no-change rerun), log $W/$key.log" >&2
  fi
  read -r u sy <"$W/$key.time"
  awk -v a="$s" -v b="$e" -v u="$u" -v sy="$sy" -v c0="$c0" -v c1="$c1" \
    'BEGIN {printf "%.2f %.2f %s\n", b - a, u + sy, (c0 < 0 ? "-1" : sprintf("%.2f", (c1 - c0) / 1e9))}' >>"$W/$key.runs"
}

# median of column COL of FILE
median() { awk -v c="$2" '{print $c}' "$1" | sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }

# The two variants take turns, so that a change in the machine's load touches both alike.
for n in 3 "$N"; do
  echo "== $n hosts: $R reruns of each variant, taking turns" >&2
  ansible-playbook -i "$W/inv-$n/hosts.yml" site.yml >"$W/switch-$n.log" 2>&1 ||
    { tail -20 "$W/switch-$n.log" >&2; exit 1; }
  for i in $(seq 1 "$R"); do
    run "site-$n" site.yml "$n"
    run "floor-$n" scripts/bench_scaling_floor.yml "$n"
  done
  for variant in site floor; do
    app=$(sed -nE "s/^$PRE-h2 +: ok=([0-9]+) .* skipped=([0-9]+).*/ok \1, skipped \2/p" "$W/$variant-$n.log")
    echo "$app" >"$W/$variant-$n.app"
  done
done

printf '\nNo-change reruns on the same %s hosts, median of %s (%s)\n' "$N" "$R" "$(git describe --always --dirty)"
printf '%-6s %5s %9s %13s %10s   %-22s\n' variant hosts seconds "controller s" "hosts CPU s" "results per app host"
for variant in site floor; do
  for n in 3 "$N"; do
    f=$W/$variant-$n.runs
    printf '%-6s %5s %9s %13s %10s   %-22s\n' "$variant" "$n" "$(median "$f" 1)" "$(median "$f" 2)" "$(median "$f" 3)" \
      "$(cat "$W/$variant-$n.app")"
  done
done
printf '\n%-6s %10s %22s %22s %22s\n' variant "$N / 3" "s per added host" "controller CPU s / host" "hosts CPU s / host"
for variant in site floor; do
  a=$W/$variant-3.runs b=$W/$variant-$N.runs
  awk -v n="$N" -v v="$variant" -v w3="$(median "$a" 1)" -v wn="$(median "$b" 1)" \
      -v c3="$(median "$a" 2)" -v cn="$(median "$b" 2)" -v h3="$(median "$a" 3)" -v hn="$(median "$b" 3)" \
    'BEGIN {printf "%-6s %10.2f %22.3f %22.3f %22s\n", v, wn / w3, (wn - w3) / (n - 3), (cn - c3) / (n - 3),
            (h3 < 0 ? "n/a" : sprintf("%.3f", (hn - h3) / (n - 3)))}'
done
echo "(logs: $W)"
