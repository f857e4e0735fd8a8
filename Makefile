# care_verl: `make demo` (set up, then the CPU demo: SFT -> CARE RL -> plots) and `make test` (set up, then the test suite).
# Both create ./.venv on first use; they need only Python 3.11 on the machine.

PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.care_verl_installed

.PHONY: setup demo compare test test-fast bench clean

$(STAMP): pyproject.toml constraints/cpu.txt
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) on PATH (or run: make PYTHON=/path/to/python3.11 ...)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# The constraints file holds torch/torchvision to the CPU-capable pair; verl's GPU extras would swap them.
	$(PY) -m pip install -q -c constraints/cpu.txt -e ".[test]"
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(PY) -m care_verl.demo

# GRPO / CARE / CARE w/o RGR x 5 seeds, 2 ablations x 3, RGR modes x 3 (hours of CPU; resumes where it stopped).
# Starts from the demo's SFT model when there is one (copied into runs/compare/start_model on the first launch,
# which later launches reuse); COMPARE_ARGS adds options (python -m care_verl.compare --help).
compare: $(STAMP)
	$(PY) -m care_verl.compare $(if $(wildcard runs/compare/start_model/config.json),,$(if $(wildcard runs/demo/sft/model/config.json),--sft-model runs/demo/sft/model)) $(COMPARE_ARGS)

test: $(STAMP)
	$(PY) -m pytest -q tests

test-fast: $(STAMP)
	$(PY) -m pytest -q tests -m "not e2e"

bench: $(STAMP)
	$(PY) benchmarks/bench_core_advantages.py

clean:
	rm -rf runs .pytest_cache
