#!/usr/bin/env bash
# Run every test: lint, unit (pytest), molecule scenarios. Every stage runs
# even when an earlier one fails; the closing summary counts every check and
# the exit code is non-zero when anything failed or nothing ran.
#   scripts/test.sh            everything
#   scripts/test.sh lint|unit|molecule [scenario...]
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
scripts/setup.sh || { echo "setup failed"; exit 1; }
export PATH="$ROOT/.venv/bin:$PATH"
export MONSTACK_CACHE="${MONSTACK_CACHE:-/var/cache/monstack}"
export PROMTOOL="$MONSTACK_CACHE/bin/promtool" AMTOOL="$MONSTACK_CACHE/bin/amtool"
export ANSIBLE_CONFIG="$ROOT/ansible.cfg"
RESULTS="$ROOT/build/results"
rm -rf "$RESULTS"; mkdir -p "$RESULTS"
what="${1:-all}"; shift || true
scenarios=("$@")
[ "${#scenarios[@]}" -gt 0 ] || scenarios=($(ls molecule | grep -v shared))

stage() {  # stage NAME CMD...: run, time, record pass/fail as a junit file
  local name="$1" start rc; shift
  printf '\n== %s\n' "$name"
  start=$(date +%s)
  "$@"; rc=$?
  python3 scripts/record_stage.py "$RESULTS" "$name" "$rc" "$(( $(date +%s) - start ))"
  return 0
}

if [[ "$what" == all || "$what" == lint ]]; then
  stage "lint: yamllint" yamllint --strict .
  stage "lint: ansible-lint (production profile)" ansible-lint --profile production
fi
if [[ "$what" == all || "$what" == unit ]]; then
  printf '\n== unit tests (pytest)\n'
  # Two worker processes (MONSTACK_TEST_WORKERS; 0: one process), each taking
  # whole files: most of these tests wait on real programs, not on the CPU.
  workers="${MONSTACK_TEST_WORKERS:-2}"
  parallel=()
  [ "$workers" -gt 0 ] && parallel=(-n "$workers" --dist loadfile)
  pytest tests -p no:cacheprovider "${parallel[@]}" --junitxml="$RESULTS/unit.xml" -q
fi
if [[ "$what" == all || "$what" == molecule ]]; then
  for s in "${scenarios[@]}"; do
    export MONSTACK_JUNIT="$RESULTS/molecule-$s.xml"
    stage "molecule test -s $s" molecule test -s "$s"
  done
fi
python3 scripts/summary.py "$RESULTS"
