#!/usr/bin/env bash
# The GPU tier of a study; default the stance study (docs/results/stance-minimal-pairs/gpu.yaml and GPU.md).
#
#   bash scripts/gpu_study.sh prepare          here: data side, `curate experiment export` to build/gpu/run, wheels, GGUF
#   bash scripts/gpu_study.sh smoke            on the lent GPU machine, after the two staging calls (build/gpu/a, b):
#                                              SmolLM2's weights through the engine, first loss against its own
#   bash scripts/gpu_study.sh run              on the lent GPU machine, next: `curate experiment run-pack`
#   bash scripts/gpu_study.sh collect FILES    here: `curate experiment import`, then the report in runs/gpu-<study>
#
# Extra arguments go to scripts/gpu_study.py (e.g. prepare --exp FILE; run --jobs 8). PYTHON names the interpreter
# for prepare and collect (default .venv/bin/python).
set -euo pipefail
cd "$(dirname "$0")/.."
cmd="${1:?usage: gpu_study.sh prepare|smoke|run|collect [args]}"; shift
case "$cmd" in
  prepare|collect)
    exec "${PYTHON:-.venv/bin/python}" scripts/gpu_study.py "$cmd" "$@" ;;
  run|smoke)
    # the GPU machine reaches no registry: install the carried wheels beside its own torch and transformers
    site="${GPU_STUDY_SITE:-/tmp/gpu-study-site}"
    if compgen -G "build/gpu/wheels/*.whl" > /dev/null; then
      python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" build/gpu/wheels/*.whl
    fi
    export PYTHONPATH="$site:$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
    set -- --site "$site" "$@"
    exec python3 scripts/gpu_study.py "$cmd" "$@" ;;
  *)
    echo "usage: gpu_study.sh prepare|smoke|run|collect [args]" >&2; exit 2 ;;
esac
