# One command sets up and runs each job; the virtual environment is created on first use.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install demo test bench bench-gddim bench-pds notebooks clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev,notebooks]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) experiments/demo.py --out demo_out

test: $(STAMP)
	$(PY) -m pytest -n 2 tests

bench: $(STAMP)
	$(PY) experiments/bench_solvers.py

bench-gddim: $(STAMP)
	$(PY) experiments/bench_gddim.py

bench-pds: $(STAMP)
	$(PY) experiments/bench_pds.py

notebooks: $(STAMP)
	$(PY) -m jupytext --to ipynb notebooks/*.py

clean:
	rm -rf $(VENV) demo_out .pytest_cache
