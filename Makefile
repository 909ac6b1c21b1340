# Reliability: the full-length load and fault benchmark (10-minute soak, 15 s overload burst,
# SIGTERM under load, SIGKILL during a sweep; writes benchmarks/results/reliability.json and fails
# when a check fails), then every reliability test. Run it on a quiet machine: about 15 minutes.
PYTHON ?= python

.PHONY: reliability reliability-quick

reliability:
	$(PYTHON) benchmarks/reliability.py
	$(PYTHON) -m pytest -m reliability -q tests

# The short versions (about a minute each), as in the default test suite.
reliability-quick:
	$(PYTHON) benchmarks/reliability.py --quick
	$(PYTHON) -m pytest -m reliability -q tests
