# The two commands: `make book` builds the book, `make test` runs the tests. Each sets up .venv when needed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export OMP_WAIT_POLICY ?= PASSIVE
export EROSION_PROGRESS ?= 1

.PHONY: book test venv browser fashion-mnist clean mutation

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

# the optional Ray extra, which the executor tests need (the default install does not)
CLUSTER := $(VENV)/.installed-cluster
$(CLUSTER): $(STAMP)
	$(PY) -m pip install -q -e '.[dev,cluster]'
	touch $(CLUSTER)

# Debian's Chromium for the browser test (skipped when it is already installed)
browser:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; }

# Debian's Fashion-MNIST (IDX files in /usr/share/datasets/fashion-mnist) for the dataset test (skipped when present)
fashion-mnist:
	@test -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q dataset-fashion-mnist; }

book: $(STAMP)
	$(PY) -m erosion_utils book

test: $(CLUSTER) browser fashion-mnist
	EROSION_PROGRESS=0 $(PY) -m pytest -q --durations=15 tests

# mutation testing (issue 25) of the analysis plan, the verdict rules, the evaluator and the cache-key code: each mutant
# is a small change (a threshold moved, > made >=, an operator or outcome swapped) whose tests must fail; prints the
# score and every surviving mutant, writes test-artifacts/mutation.json. Not part of `make test` (about an hour on 2 cores).
mutation: $(STAMP)
	EROSION_PROGRESS=0 $(PY) tools/mutate.py --jobs 2

clean:
	rm -rf _build book/executed
