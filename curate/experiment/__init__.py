"""`curate experiment`: the paper's experiment (conditions x stages) as one resumable command.

    ef = load_experiment("exp.yaml")              # typed, strict
    plan = make_plan("exp.yaml", "runs/exp")      # the node graph, what is finished, budget problems
    res = run_experiment("exp.yaml", "runs/exp")  # runs what is not finished; results.json + report/

The top layer: it calls the stages' Python APIs; nothing in the stages imports it. See docs/experiment.md.
"""

from curate.experiment.config import Experiment, ExperimentFile, load_experiment
from curate.experiment.plan import Plan, make_plan
from curate.experiment.presets import PRESETS, render_experiment
from curate.experiment.run import RunResult, run_experiment

__all__ = [
    "Experiment",
    "ExperimentFile",
    "PRESETS",
    "Plan",
    "RunResult",
    "load_experiment",
    "make_plan",
    "render_experiment",
    "run_experiment",
]
