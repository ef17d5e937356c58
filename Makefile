# One command sets up and runs each job; the virtual environment is created on first use.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install demo lint test test-slow test-all evaluate fid-crosscheck fdm-crosscheck fdm-official-digits pretrained-crosscheck bench-pretrained bench bench-gddim bench-pds bench-dlg bench-custom bench-learned bench-learned-seeds bench-learned-trained bench-speed bench-fdm bench-fdm-gpu notebooks clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev,notebooks]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) experiments/demo.py --out demo_out

# ruff: line length, import order, unused and undefined names, formatting (configured in pyproject.toml)
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# `make test`: every test not listed in tests/slow_tests.txt; `make test-slow`: those; `make test-all`: both in one run
test: lint
	$(PY) -m pytest -n 2 -m "not slow" tests

test-slow: $(STAMP)
	$(PY) -m pytest -n 2 -m slow tests

test-all: lint
	$(PY) -m pytest -n 2 tests

bench: $(STAMP)
	$(PY) experiments/bench_solvers.py

bench-gddim: $(STAMP)
	$(PY) experiments/bench_gddim.py

bench-pds: $(STAMP)
	$(PY) experiments/bench_pds.py

bench-dlg: $(STAMP)
	cd experiments && ../$(PY) bench_dlg.py

bench-custom: $(STAMP)
	cd experiments && ../$(PY) bench_custom.py

# learned / optimized discretizations on the test bed (resumable: rows in results/bench_learned.jsonl)
bench-learned: $(STAMP)
	cd experiments && ../$(PY) bench_learned.py

# the headline learned cells refitted with three fit keys (how much one fit's figure varies)
bench-learned-seeds: $(STAMP)
	cd experiments && ../$(PY) bench_learned_seeds.py

bench-learned-trained: $(STAMP)
	cd experiments && ../$(PY) bench_learned_trained.py

# on a GPU machine (writes experiments/results/bench_speed_gpu_*.json); the CPU part runs anywhere
bench-speed: $(STAMP)
	$(PY) experiments/bench_speed.py --gpu --dtypes bf16
	$(PY) experiments/bench_speed.py --gpu --dtypes fp32
	$(PY) experiments/bench_speed.py --cpu
	$(PY) experiments/bench_speed.py --report

# one FDM training step vs the official code (a checkout of sail-sg/FDM, read at run time, never copied; torch in
# .venv-pretrained): make fdm-crosscheck FDM_SRC=../FDM -> results/fdm_crosscheck.json (fixture: tests/fixtures/fdm)
FDM_SRC ?=
fdm-crosscheck: $(STAMP) .venv-pretrained/bin/python
	test -n "$(FDM_SRC)" || (echo "give FDM_SRC=<checkout of sail-sg/FDM>"; exit 2)
	.venv-pretrained/bin/python experiments/fdm_crosscheck.py reference .venv-pretrained/fdm_crosscheck \
		--fdm-src $(FDM_SRC) --fdm-revision "$$(git -C $(FDM_SRC) rev-parse --short HEAD 2>/dev/null || echo unknown)"
	$(PY) experiments/fdm_crosscheck.py compare .venv-pretrained/fdm_crosscheck

# VP and VP-FDM trained by the official FDM code on bench-fdm's problem (torch env; ≈ 5 min per arm and seed)
fdm-official-digits: $(STAMP) .venv-pretrained/bin/python
	test -n "$(FDM_SRC)" || (echo "give FDM_SRC=<checkout of sail-sg/FDM>"; exit 2)
	$(PY) experiments/fdm_official_digits.py data .venv-pretrained/fdm_official_digits
	.venv-pretrained/bin/python experiments/fdm_official_digits.py train .venv-pretrained/fdm_official_digits \
		--fdm-src $(FDM_SRC) $(FDM_ARGS)
	$(PY) experiments/fdm_official_digits.py compare .venv-pretrained/fdm_official_digits

# FDM vs base training, 4 arms × 3 seeds (≈ 25 min on 2 CPU cores; results/bench_fdm_cpu.*)
bench-fdm: $(STAMP)
	$(PY) experiments/bench_fdm.py

# on a GPU machine (16×16 digits, larger UNet)
bench-fdm-gpu: $(STAMP)
	$(PY) experiments/bench_fdm.py --gpu

# FID / pixel metrics vs NFE for a trained run: make evaluate RUN=runs/x [SOLVERS=heun,unipc NFES=5,10 NUM=50000]
RUN ?= runs/digits_mlp_edm
SOLVERS ?= edm_heun,dpmpp_2m,unipc,ipndm
NFES ?= 5,10,20
NUM ?= 2000
evaluate: $(STAMP)
	test -f $(RUN)/config.json || $(PY) experiments/train.py --config experiments/configs/default.py:digits-edm \
		--workdir $(RUN) --set model.kind=mlp --set data.size=8 --set train.steps=4000 --set train.eval_samples=0
	$(PY) experiments/evaluate.py --workdir $(RUN) --sweep --solvers $(SOLVERS) --nfes $(NFES) --num $(NUM)

# FID Inception vs pytorch-fid's network with shared random weights (installs torch into .venv-fid, ~3 GB)
fid-crosscheck: $(STAMP)
	test -x .venv-fid/bin/python || ($(PYTHON) -m venv .venv-fid && .venv-fid/bin/pip install -q torch torchvision pytorch-fid)
	.venv-fid/bin/python experiments/fid_crosscheck.py torch .venv-fid/ref.npz
	$(PY) experiments/fid_crosscheck.py jax .venv-fid/ref.npz

# ports of published networks vs the originals with shared random weights (installs torch + diffusers into
# .venv-pretrained; needs checkouts of NVlabs/edm and yang-song/score_sde, read at run time, never copied):
#   make pretrained-crosscheck EDM_SRC=../edm SCORE_SDE_SRC=../score_sde [XCHECK_FULL=--full]
EDM_SRC ?=
SCORE_SDE_SRC ?=
XCHECK_FULL ?=
XCHECK_OUT ?= .venv-pretrained/crosscheck$(XCHECK_FULL)
.venv-pretrained/bin/python:
	$(PYTHON) -m venv .venv-pretrained && .venv-pretrained/bin/pip install -q torch diffusers safetensors numpy click tqdm pillow
pretrained-crosscheck: $(STAMP) .venv-pretrained/bin/python
	test -n "$(EDM_SRC)" -a -n "$(SCORE_SDE_SRC)" || (echo "give EDM_SRC=<checkout of NVlabs/edm> SCORE_SDE_SRC=<checkout of yang-song/score_sde>"; exit 2)
	.venv-pretrained/bin/python experiments/pretrained_crosscheck.py reference $(XCHECK_OUT) --edm-src $(EDM_SRC) \
		--score-sde-src $(SCORE_SDE_SRC) --jax-python $(PY) $(XCHECK_FULL)
	$(PY) experiments/pretrained_crosscheck.py compare $(XCHECK_OUT)

# diffusers vs diffjax on the same random-weight DDPM CIFAR-10 UNet2DModel (results/bench_pretrained.*)
bench-pretrained: $(STAMP) .venv-pretrained/bin/python
	.venv-pretrained/bin/python experiments/bench_pretrained.py torch .venv-pretrained/bench
	$(PY) experiments/bench_pretrained.py jax .venv-pretrained/bench

notebooks: $(STAMP)
	$(PY) -m jupytext --to ipynb notebooks/*.py

clean:
	rm -rf $(VENV) .venv-fid .venv-pretrained demo_out .pytest_cache
