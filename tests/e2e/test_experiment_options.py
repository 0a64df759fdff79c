"""Experiment file options. Per node kind Slurm resources: post-training, conversion and evals ask for what it gives
(GPUs, CPUs, memory, time, partition); training keeps train.gpus and torchrun; a bad kind is one clear error."""

from __future__ import annotations

import pytest
import yaml

from curate.experiment import make_plan, render_experiment
from curate.experiment.slurm import script
from curation.core.errors import CurationError


def _experiment(tmp_path, resources):
    exp_path = tmp_path / "exp.yaml"
    raw = yaml.safe_load(render_experiment("demo"))
    raw["posttrain"] = {"sft": {"data": ["demo"], "steps": 1}, "dpo": {"data": ["demo"], "steps": 1}}
    raw["train"]["gpus"] = 2
    raw["slurm"] = {"time": "01:00:00", "cpus_per_task": 4, "mem": "16G", "resources": resources}
    exp_path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return exp_path


def test_each_kind_gets_its_own_request(tmp_path):
    resources = {
        "posttrain": {"gpus": 1, "mem": "64G", "time": "12:00:00", "partition": "gpu"},
        "eval": {"gpus": 1, "cpus_per_task": 16},
        "train": {"time": "48:00:00", "extra": ["--qos=long"]},
    }
    plan = make_plan(_experiment(tmp_path, resources), check_budgets=False)
    by_kind = {}
    for node in plan.nodes:
        by_kind.setdefault(node.kind, node)
    post = script(tmp_path, plan, by_kind["posttrain"])
    assert "#SBATCH --gpus-per-node=1" in post and "#SBATCH --mem=64G" in post and "#SBATCH --time=12:00:00" in post
    assert "#SBATCH --partition=gpu" in post and "torch.distributed.run" not in post
    ev = script(tmp_path, plan, by_kind["eval"])
    assert "#SBATCH --gpus-per-node=1" in ev and "#SBATCH --cpus-per-task=16" in ev and "#SBATCH --mem=16G" in ev
    train = script(tmp_path, plan, by_kind["train"])
    assert "#SBATCH --gpus-per-node=2" in train and "torch.distributed.run" in train and "--qos=long" in train
    assert "#SBATCH --time=48:00:00" in train
    resources["posttrain"]["gpus"] = 4  # several GPUs: DDP post-training, one process per GPU on the one node
    plan = make_plan(_experiment(tmp_path, resources), check_budgets=False)
    post = script(tmp_path, plan, next(n for n in plan.nodes if n.kind == "posttrain"))
    assert "#SBATCH --gpus-per-node=4" in post and "--nodes=" not in post
    assert "-m torch.distributed.run --standalone --nproc-per-node 4 -m curate.experiment.node" in post
    mix = script(tmp_path, plan, by_kind["mix"])  # no entry: the defaults, no GPU
    assert "gpus-per-node" not in mix and "#SBATCH --time=01:00:00" in mix and "#SBATCH --cpus-per-task=4" in mix


@pytest.mark.parametrize(
    "resources, needle",
    [({"evals": {"gpus": 1}}, "unknown node kind(s) evals"), ({"train": {"gpus": 4}}, "training GPUs are train.gpus")],
)
def test_bad_resources_are_one_clear_error(tmp_path, resources, needle):
    with pytest.raises(CurationError, match="slurm") as err:
        make_plan(_experiment(tmp_path, resources), check_budgets=False)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_contrasts_from_the_file_join_the_stance_contrast(tmp_path):
    """`contrasts: [[a, b]]` in the experiment file: a minus b beside the baseline differences; a name that is not a
    condition is refused."""
    from curate.experiment.config import load_experiment
    from curate.experiment.graph import stance_contrasts

    raw = yaml.safe_load(render_experiment("demo"))
    raw["contrasts"] = [["filtered", "unfiltered"], ["unfiltered", "filtered"]]
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    assert stance_contrasts(load_experiment(path).exp) == [["filtered", "unfiltered"], ["unfiltered", "filtered"]]
    raw["contrasts"] = [["filtered", "neutral"]]
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    with pytest.raises(CurationError, match="contrasts"):
        load_experiment(path)


def test_reference_models_are_named_apart_from_conditions(tmp_path):
    raw = yaml.safe_load(render_experiment("demo"))
    path = tmp_path / "exp.yaml"
    raw["reference_models"] = [{"name": "published", "model": "smollm2"}]
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    plan = make_plan(path, check_budgets=False)
    ref = next(n for n in plan.nodes if n.id == "_shared/eval-ref-published")
    assert ref.kind == "eval" and ref.params["model"] == "smollm2" and ref.params["tag"] == "reference"
    assert "_shared/eval-ref-published" in next(n for n in plan.nodes if n.kind == "report").deps
    raw["reference_models"] = [{"name": "filtered", "model": "smollm2"}]
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    with pytest.raises(CurationError, match="reference_models: filtered"):
        make_plan(path, check_budgets=False)
