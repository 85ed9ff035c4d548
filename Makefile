# Set-up and the two commands of the README. Everything is created on first use:
#   make verify   -> the main job: `altheory verify` on its built-in quick suite
#   make test     -> the whole test suite
# Both install the package with every extra (`.[all]`: figures, data, train, sweep, dask, test,
# bench); `pip install altheory` alone gives the lean core (numpy, scipy, cvxpy, torch, ...).
# The venv pins the torch build that lies on this kind of machine's disk (a bare `torch`
# requirement may download several GB); the package itself accepts any recent torch.

VENV   ?= .venv
PY     := $(VENV)/bin/python
TORCH  ?= torch==2.14.1 torchvision==0.29.1
STAMP  := $(VENV)/.altheory-installed
FMNIST := /usr/share/datasets/fashion-mnist

.PHONY: verify test test-thorough figures bench-deps test-time mutation coverage setup system-deps clean

verify: setup
	$(VENV)/bin/altheory verify

test: setup
	$(VENV)/bin/pytest -q

test-thorough: setup
	ALTHEORY_HYPOTHESIS=thorough ALTHEORY_SLOW=1 $(VENV)/bin/pytest -q

figures: setup
	$(VENV)/bin/altheory figures

# pyscnn (the baseline of paper_repro/bench_fast_solver.py) pins old numpy/torch versions; its
# code runs with current ones, so it is installed without its dependency resolution (the
# `bench` extra, part of `.[all]`, lists what can be listed).
bench-deps: setup
	$(PY) -m pip install -q --no-deps pyscnn linalg_backends opt_einsum

# measure the test suite's wall time (quoted by README.md) into paper_repro/results/test_suite_time.json
test-time: setup
	$(PY) paper_repro/time_test_suite.py

# mutants written by mutmut in the code that decides verdicts and bounds, sharded by module and
# resumable (results kept in mutants/), into paper_repro/results/mutation_tool.json; not in CI
mutation: setup
	$(PY) -m pip install -q -e '.[mutation]'
	$(PY) paper_repro/mutation_tool.py --max-children 2

# branch coverage of the verdict code (altheory/claims/, altheory/descent/endpoints.py) by the tests
# that exercise it, into paper_repro/results/coverage_verdicts.json (about a minute; not in CI)
coverage: setup
	$(PY) paper_repro/coverage_verdicts.py

setup: $(STAMP) system-deps

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e '.[all]'
	touch $(STAMP)

# Fashion-MNIST (IDX files) from Debian; needed by the data loaders' tests and the alternation runs.
system-deps:
	@if [ ! -d $(FMNIST) ]; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq dataset-fashion-mnist; \
	fi

clean:
	rm -rf $(VENV) results .pytest_cache .hypothesis
