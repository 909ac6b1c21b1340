# Reliability: the full-length load and fault benchmark (10-minute soak at 80 % of capacity, 15 s
# burst at 4x capacity, SIGTERM under load, SIGKILL during a sweep; writes
# benchmarks/results/reliability.json and fails when a check fails), then every reliability test
# at full budget (schemathesis 300 examples per operation, 5,000 fuzz examples per property, the
# fault tests; the soak and overload tests, marked `load`, are left out because the benchmark has
# just run them at full length). Run it on a quiet machine: about 20 minutes.
PYTHON ?= python

.PHONY: reliability reliability-quick

reliability:
	$(PYTHON) benchmarks/reliability.py
	WORKBENCH_RELIABILITY=full $(PYTHON) -m pytest -q -m "reliability and not load" tests

# The short versions (a couple of minutes), as in the default test suite.
reliability-quick:
	$(PYTHON) benchmarks/reliability.py --quick
	$(PYTHON) -m pytest -q -m reliability tests
