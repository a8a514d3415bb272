# The two commands of the README:
#   make demo   bring up the demo stack on local test hosts and print its URLs
#   make test   run every test (lint, unit, molecule) and print a summary
.PHONY: demo demo-down test lint unit molecule setup bench bench-sbs bench-scaling

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

# make bench: deployment filters (and deployments.yml with MONSTACK_BENCH_INVENTORY),
# then site.yml on fresh hosts beside commit 45c9c2c; HOSTS=10 make bench for 10 hosts.
# (bench_deployments.py exits 1 over its --budget; the site.yml part runs anyway).
bench: setup
	@rc=0; .venv/bin/python scripts/bench_deployments.py || rc=$$?; \
	scripts/bench_converge.sh || rc=$$?; exit $$rc

# The standard collection prometheus.prometheus beside this package on the same kind of hosts.
bench-sbs: setup
	scripts/side_by_side_bench.sh .

# What an added host costs on a no-change rerun: 3 and HOSTS (default 10) hosts
# of one set, site.yml against its floor (application hosts: preflight and one
# module call), with the controller's and the hosts' CPU.
bench-scaling: setup
	scripts/bench_scaling.sh
