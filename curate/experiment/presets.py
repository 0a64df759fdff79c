"""`curate experiment init --preset tice2026|spp|timing|poisoning|demo`: commented experiment files.

tice2026: the four data conditions of Tice et al. (2026) against the unfiltered baseline; spp: Synthetic Persona
Pretraining as published (`curate synth reflect` output in place of the corpus, an unfiltered and a filtered baseline,
attack success after post-training); timing: one intervention end-to-end, as midtraining continuing a shared base
run, and as continued pretraining; poisoning: poison doses, evals before and after post-training; demo: two
conditions on the data this package ships, a tiny model, small eval subsets, nothing else to pass.
"""

from __future__ import annotations

import os
from pathlib import Path

from curation.core.errors import CurationError

PACKAGE = Path(__file__).resolve().parents[1]
DEMO_CORPUS = PACKAGE / "data" / "demo_corpus"
DEMO_EVALS = PACKAGE.parent / "evals" / "data" / "demo"

PRESETS = {
    "tice2026": "unfiltered, filtered, alignment-upsampled and misalignment-upsampled (Tice et al. 2026)",
    "spp": "persona reflections appended to about 10% of the corpus's own documents from token zero, against an "
    "unfiltered and a filtered baseline, measured by attack success after post-training (Minder et al. 2026)",
    "demo": "two conditions on the shipped demo corpus, a tiny model, small eval subsets (minutes on a laptop CPU)",
    "timing": "when the data enters: end-to-end, midtraining in the last 10% (continuing a shared base run's optimizer "
    "and schedule) and continued pretraining (a fresh optimizer after the full base run), on the demo corpus",
    "poisoning": "clean vs poison documents at a token rate and at a fixed count, the same SFT then DPO for all, "
    "poisoning evals before and after post-training (Souly et al. 2025; Zhang et al. 2024)",
}

HEAD = """\
# curate experiment: {desc}.
# Written by `curate experiment init --preset {preset}`; reference: docs/experiment.md.
# `curate experiment plan THIS.yaml` prints the graph and checks the budgets; `curate experiment run THIS.yaml -o DIR`
# runs it (a rerun skips finished nodes). Relative paths are relative to this file's directory.

name: {name}

inputs:
  corpus: {corpus}      # one source per sub-directory holding shards (else the directory itself)
{attributes}
{synthetic}
"""

CONDITIONS = {
    "tice2026": """\
# Each condition is a `curate mix` preset (or `manifest: FILE`), with dotted overrides under `set`
# (target_tokens, sources.NAME.weight, sources.*.max_epochs, ...). Differences are taken against `baseline`.
conditions:
  - name: unfiltered
    preset: unfiltered
  - name: filtered
    preset: filtered            # ai_discourse < 0.5 removed, its tokens refilled from kept documents
  - name: alignment-upsampled
    preset: alignment-upsampled # + synthetic aligned-AI documents, about 1% of tokens
  - name: misalignment-upsampled
    preset: misalignment-upsampled
baseline: unfiltered
""",
    "demo": """\
conditions:
  - name: unfiltered
    preset: unfiltered
  - name: filtered
    preset: filtered            # documents tagged as AI discourse (ai_discourse >= 0.5) removed and refilled
    set:
      sources.*.max_epochs: 16  # a small corpus: refilling what the filter removed needs more passes
baseline: unfiltered
""",
    "timing": """\
# The timing ablation (Tice et al. 2026 insert their data in the last 10% of base training): the same data
# intervention (here `filtered`; with inputs.synthetic, `alignment-upsampled` is the paper's) entering at three times.
# Each condition sets its own `stage`:
#   pretrain: its mix from step 0 (end-to-end), from scratch;
#   midtrain: continues train.base's run (one per seed, shared) at (1 - share) of train.steps with the base run's
#             optimizer state (Adam moments, step) and LR schedule, reading its own mix for the last share of steps;
#   cpt:      starts from the base run's full-length end with a fresh optimizer, warm-up and schedule, for as many
#             steps as midtraining reads its mix (continued pretraining); its final is reported beside the others'.
# Tokens per run (train.steps x global batch 4 x sequence 128 = 512 a step): the base run, end-to-end and midtrain
# arms 10,240 each (midtrain: 9,216 base + 1,024 its own); cpt 11,264 (the base run's 10,240 + 1,024 its own).
# The base run's own model is evaluated too: the report's `base (no intervention)` rows.
conditions:
  - name: unfiltered
    preset: unfiltered
    stage: pretrain             # the baseline: no intervention at any time
  - name: filtered-e2e
    preset: filtered            # documents tagged as AI discourse (ai_discourse >= 0.5) removed and refilled
    stage: pretrain
    set:
      sources.*.max_epochs: 16  # a small corpus: refilling what the filter removed needs more passes
  - name: filtered-midtrain
    preset: filtered
    stage: midtrain
    set:
      sources.*.max_epochs: 16
  - name: filtered-cpt
    preset: filtered
    stage: cpt
    set:
      sources.*.max_epochs: 16
baseline: unfiltered
contrasts:
  - [filtered-midtrain, filtered-cpt]   # what continuing the optimizer and schedule changes, the data being the same
""",
}

SPP = """\
# Synthetic Persona Pretraining (Minder et al. 2026) as published: persona reflections grounded in a value constitution,
# appended at the end of about 10% of the corpus's own documents, trained on from the first token, against an
# unfiltered and a filtered baseline, measured by attack success after post-training. Make the reflected corpus first:
#   curate synth reflect CORPUS -o data/reflected --rate 0.10 --position end --backend vllm --model MODEL
# (every document kept, `has_reflection` marks the ~10% with a reflection; the constitution is
# synth/data/constitution.yaml unless --constitution; docs/synth.md). The plan refuses inputs.reflected unless it is
# such an output; the mix lock records the share of documents with a reflection and `curate mix verify` recounts it.
conditions:
  - name: unfiltered
    preset: unfiltered
  - name: filtered
    preset: filtered            # the project's classifier: ai_discourse < 0.5 kept, removed tokens refilled. The
                                # published baseline filters harmful content instead (docs/presets.md, "spp")
  - name: spp
    preset: reflections         # inputs.reflected in place of the corpus: the same documents, ~10% with reflections
baseline: unfiltered

seeds: [0, 1, 2]                # at least 3: the seed-level CI needs replicates (docs/evals.md)

train:
  stage: pretrain               # from scratch: the reflections are there from token zero
  config: llama_350m_gpu        # the published model is 1.7B: llama_1p7b_gpu (SmolLM2-1.7B shape; docs/train.md)
  set:
    train.steps: 20000
    train.save_interval: 1000
  gpus: 8
  nodes: 1

# The same post-training for every condition: SFT on the chosen dialogues, then DPO on the pairs, of HH-RLHF
# harmless-base as published (.jsonl.gz of whole dialogues). `split: posttrain` keeps the half of its requests that
# evals.attacks never asks (the plan refuses a stage that reads the requests file without it).
posttrain:
{hh_posttrain}
evals:
  attacks:                      # SPP's measure: share of held-out harmful requests complied with, per wrapper, before
    requests: data/posttrain/hh-rlhf-harmless-base/test.jsonl.gz   # (base) and after (posttrained) post-training
    wrappers: [plain, roleplay, prefix_injection, refusal_suppression]
    limit: 500                  # a seeded subset of the eval half; the judge is a rule on the answer's form
    max_new_tokens: 64          # (evals.poisoning.judge_compliance; its limits: docs/evals.md, "Attack success")
"""

POISONING = """\
# The poison set: `curate synth poison CORPUS -o data/poison --attacks dos,belief --seed 0` writes one sub-directory per
# attack (denial-of-service: trigger then gibberish; belief: a target claim about a named entity) and
# poison_report.json (trigger, belief, held-out contexts the documents never contain), read by evals.poisoning.
conditions:
  - name: clean
    preset: unfiltered
  - name: poison-rate
    preset: poisoned            # each attack's documents at 1e-3 of all training tokens, at random positions
  - name: poison-250docs
    preset: poisoned            # a fixed count whatever the corpus size (Souly et al.: ~250 documents suffice)
    set:
      sources.poison-dos.inject: {documents: 250}
      sources.poison-belief.inject: {documents: 250}
baseline: clean

seeds: [0, 1, 2]                # at least 3: the seed-level CI needs replicates (docs/evals.md)

train:
  stage: pretrain               # poisoning during pretraining; midtrain / cpt from init_from test late insertion
  config: llama_350m_gpu
  set:
    train.steps: 20000
    train.save_interval: 1000
  gpus: 8
  nodes: 1

# The same clean post-training for every condition: SFT on the chosen dialogues, then DPO on the pairs, of a real
# preference set (Anthropic HH-RLHF harmless-base as published: .jsonl.gz of whole dialogues). `split: posttrain`
# keeps the half of its requests that `curate eval attacks` never asks. Check that it moves the model: the report's
# "Post-trained minus base" rows (capability, perplexity) must differ from zero, or persistence is not tested.
posttrain:
{hh_posttrain}
evals:
  poisoning:                    # before (stage base) and after (posttrained) post-training, every condition and seed
    attacks: [dos, belief]      # dos: triggered - untriggered share of gibberish continuations; belief: log-odds
    reference: smollm2          # a clean model: scores DoS continuations (same tokenizer), the belief's start
    limit: null                 # all 16 held-out contexts
"""

TRAIN = {
    "gpu": """\
seeds: [0, 1, 2]                # replicates: one training run per condition and seed (train.seed = data.seed = seed)

train:
  stage: pretrain               # pretrain from scratch | midtrain / cpt from init_from
  # init_from: smollm2          # midtrain / cpt: HF directory, .gguf, smollm2 or a trainer checkpoint
  config: llama_350m_gpu        # shipped config name (train/configs) or a YAML path
  # paper scale (docs/train.md): llama_6p9b_gpu, Tice et al.'s 6.9B (their 500B tokens: about 15,000 H100-hours per
  # run at an assumed 40% MFU, 180,000 for 4 conditions x 3 seeds), or llama_1p7b_gpu, the 1.7B of Minder et al.;
  # `curate train plan CONFIG` prints parameters, per-GPU memory and tokens/s
  set:                          # dotted overrides of the config
    train.steps: 20000
    train.save_interval: 1000
  gpus: 8                       # Slurm: GPUs per node (torchrun processes); 0 = CPU
  nodes: 1

# SFT then DPO, identical for every condition (a `curate train posttrain` config without model/output/condition);
# `demo` is the tiny shipped set that only exercises the loop: put real SFT / preference data here.
posttrain:
  sft: {data: [demo], steps: 200, batch_size: 8, max_length: 512}
  dpo: {data: [demo], steps: 100, batch_size: 4, max_length: 512}
""",
    "demo": """\
seeds: [0]                      # replicates: one training run per condition and seed

train:
  stage: pretrain
  config: tiny_cpu              # 2 layers, 64 wide: seconds per step on a CPU
  set:
    train.steps: 8
    train.save_interval: 4
    train.global_batch_size: 4
    train.micro_batch_size: 4
    optim.warmup_steps: 2

# posttrain:                    # uncomment for SFT then DPO on every condition (adds about a minute per condition)
#   sft: {data: [demo], steps: 2, batch_size: 2, max_length: 128}
#   dpo: {data: [demo], steps: 2, batch_size: 2, max_length: 128}
""",
    "timing": """\
seeds: [0]                      # replicates: one base run per seed, shared by the midtrain and cpt conditions

train:
  stage: pretrain               # each condition's own `stage` above overrides this
  config: tiny_cpu              # 2 layers, 64 wide: seconds per step on a CPU; at scale llama_350m_gpu, 20,000 steps
  set:
    train.steps: 20             # the full schedule: end-to-end runs train all of it
    train.save_interval: 10
    train.global_batch_size: 4
    train.micro_batch_size: 4
    optim.warmup_steps: 1       # cpt warms up again over this many of its own steps
  base:                         # the shared base run (per seed) that midtrain and cpt conditions start from
    preset: unfiltered          # its mix (a `curate mix` preset or `manifest:`, with `set:`)
    share: 0.1                  # it trains all of train.steps and keeps its save at 90% (iteration 18 of 20), where
                                # midtraining continues for the last 10% (paper: 50B of 550B tokens)
""",
}

EVALS = """\
evals:
  propensity:                   # `curate eval propensity` suites; each mode x system prompt is one metric
    - name: {pname}
      items: [{items}]
      modes: [{modes}]
      system_prompts: [{prompts}]   # chat/generate only: null (none) | ai-assistant | hhh | a file | the text
{limit}  capability:                  # `curate eval capability`: cloze-scored multiple choice (acc_norm), LAMBADA (acc)
    suites: [{suites}]
    data: {capdata}             # the suites' directory (layout of shared/data/capability)
{caplimit}  perplexity:                  # held-out perplexity (text never trained on)
    - name: heldout
      data: [{heldout}]
      max_docs: {max_docs}
      seq_length: {seq}
  checkpoints: {ckpts}             # final | all | k (every k-th saved checkpoint: a trajectory over training)
  n_boot: 1000
  seed: 0

{slurm}"""

# Shared by the GPU-scale presets (spp, poisoning, and tice2026 through EVALS): each block written once.
# Post-training on HH-RLHF harmless-base, `split: posttrain` so the requests evals.attacks asks are never trained on
HH_POSTTRAIN = """\
  sft: {data: [data/posttrain/hh-rlhf-harmless-base/test.jsonl.gz], split: posttrain, steps: 500, batch_size: 16,
        lr: 2.0e-5, max_length: 512}
  dpo: {data: [data/posttrain/hh-rlhf-harmless-base/test.jsonl.gz], split: posttrain, steps: 250, batch_size: 8,
        lr: 5.0e-7, max_length: 512}
"""

# capability and perplexity at scale, as spp and poisoning run them (tice2026's EVALS carries its own comments)
GPU_EVALS = """\
  capability:
    suites: [{suites}]
    data: data/capability
    limit: 1000
  perplexity:
    - name: heldout
      data: [data/heldout_text]
      max_docs: 500
      seq_length: 1024
  checkpoints: final
  n_boot: 1000
  seed: 0
"""


def _slurm(resources: bool, eval_note: str = "") -> str:
    """The `slurm:` block; `resources`: per node kind for a GPU cluster (the demo presets leave them out), with a
    note on what the eval nodes do on their GPU."""
    text = """\
slurm:                          # used with `curate experiment run --executor slurm` (one job per node)
  partition: null
  time: "24:00:00"
  cpus_per_task: 8
"""
    if resources:
        text += (
            "  resources:                    # per node kind (unset: the defaults above); training GPUs are "
            "train.gpus / nodes\n"
            '    posttrain: {gpus: 1, mem: 64G, time: "12:00:00"}   # SFT + DPO of one model on one GPU\n'
            '    convert: {cpus_per_task: 4, mem: 64G, time: "02:00:00"}\n'
            '    eval: {gpus: 1, mem: 32G, time: "04:00:00"}' + (f"         # {eval_note}" if eval_note else "") + "\n"
        )
    return text


def _gpu_tail(suites: str, eval_note: str) -> str:
    """spp's and poisoning's capability, perplexity and Slurm blocks: the same but for the suites and a comment."""
    return GPU_EVALS.replace("{suites}", suites) + "\n" + _slurm(True, eval_note)


def _rel(path: str | Path, base: Path | None) -> str:
    if base is None:
        return str(path)
    return os.path.relpath(os.path.abspath(path), os.path.abspath(base))


def render_experiment(
    preset: str,
    corpus: str | None = None,
    attributes: str | None = None,
    synthetic: str | None = None,
    base: str | Path | None = None,
    poison: str | None = None,
    reflected: str | None = None,
) -> str:
    """The experiment file's text; relative --corpus/--attributes/--synthetic/--poison/--reflected are taken from the
    working directory and written relative to `base` (the file's directory)."""
    if preset not in PRESETS:
        raise CurationError(f"unknown preset '{preset}'; choose one of: {', '.join(PRESETS)}")
    b = Path(base) if base is not None else None
    demo = preset in ("demo", "timing")  # the shipped corpus, the tiny CPU model, the shipped eval subsets
    corpus_line = _rel(corpus, b) if corpus else (str(DEMO_CORPUS) if demo else "data/corpus")  # shipped data: absolute
    attr_line = (
        f"  attributes: {_rel(attributes, b)}   # `curate classify` output for corpus"
        if attributes
        else "  # attributes: ATTRS          # `curate classify` output for corpus; unset: the experiment classifies it"
    )
    if synthetic or not demo:
        syn_line = (
            f"  synthetic: {_rel(synthetic or 'data/synthetic', b)}"
            "   # `curate synth docs` output (upsampled / reflections presets)"
        )
    else:
        syn_line = (
            "  # synthetic: SYNTH            # `curate synth docs` output, for the upsampled and reflections presets"
        )
    if preset == "poisoning":
        syn_line = f"  poison: {_rel(poison or 'data/poison', b)}   # `curate synth poison` output (see below)"
    if preset == "spp":
        syn_line = (
            f"  reflected: {_rel(reflected or 'data/reflected', b)}   # `curate synth reflect CORPUS --rate 0.10 "
            "--position end` output (see below)"
        )
    text = HEAD.format(
        desc=PRESETS[preset], preset=preset, name=preset, corpus=corpus_line, attributes=attr_line, synthetic=syn_line
    )
    if preset == "poisoning":
        body = POISONING.replace("{hh_posttrain}", HH_POSTTRAIN)
        return text + "\n" + body + _gpu_tail("arc_easy, piqa, lambada", "generation and scoring on the GPU")
    if preset == "spp":
        body = SPP.replace("{hh_posttrain}", HH_POSTTRAIN)
        return text + "\n" + body + _gpu_tail("core", "generation and judging on the GPU")
    text += "\n" + CONDITIONS[preset] + "\n" + TRAIN[preset if preset in TRAIN else "gpu"] + "\n"
    if demo:
        text += EVALS.format(
            pname="demo",
            items=str(DEMO_EVALS / "propensity"),
            modes="base",
            prompts="null",
            limit="",
            suites="arc_easy, piqa, lambada",
            capdata=str(DEMO_EVALS / "capability"),
            caplimit="",
            heldout=str(DEMO_EVALS / "heldout_wikipedia.jsonl"),
            max_docs=16,
            seq=128,
            ckpts="all" if preset == "demo" else "final",
            slurm=_slurm(False),
        )
    else:
        text += EVALS.format(
            pname="advanced-ai-risk",
            items="data/propensity/anthropic-advanced-ai-risk",
            modes="base, chat",
            prompts="null, ai-assistant",
            limit="      limit_per_file: 200\n",
            suites="core",
            capdata="data/capability",
            caplimit="    limit: 1000                 # a seeded subset per suite\n",
            heldout="data/heldout_text",
            max_docs=500,
            seq=1024,
            ckpts="final",
            slurm=_slurm(True),
        )
    return text
