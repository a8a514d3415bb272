# The two commands of the README:
#   make demo   bring up the demo stack on local test hosts and print its URLs
#   make test   run every test (lint, unit, molecule) and print a summary
.PHONY: demo demo-down test lint unit molecule setup bench

setup:
	scripts/setup.sh

demo: setup
	scripts/demo.sh up

demo-down:
	scripts/demo.sh down

test:
	scripts/test.sh

lint unit molecule: setup
	scripts/test.sh $@

bench: setup
	.venv/bin/python scripts/bench_deployments.py
	@if docker inspect monstack-demo-monitor >/dev/null 2>&1; then scripts/bench_converge.sh; \
	else echo "playbook timings: skipped (no demo stack; run make demo first; deployments.yml alone: MONSTACK_BENCH_INVENTORY=<inventory>)"; fi
