"""SFT and DPO stages on Hugging Face checkpoints with TRL, resumable, logged to JSONL like pretraining.

Layout of ``cfg.output``::

    sft/checkpoints/checkpoint-N/   HF Trainer checkpoints (model, optimizer, scheduler, RNG, trainer_state.json);
                                    removed when the stage finishes unless `keep_checkpoints: true`
    sft/metrics.jsonl               one line per logged step (`iteration`, loss, lr, grad_norm, samples_per_s, ...)
    sft/run.json                    config hash, resume point, throughput
    sft/model/                      final HF checkpoint + tokenizer (with the chat template) + posttrain.json
    dpo/...                         the same for DPO
    posttrain.json                  `curate train posttrain`: condition, tag, models, eval commands

A stage whose ``model/posttrain.json`` exists with the same config hash is skipped; a killed stage resumes from its
newest *complete* checkpoint (one with ``trainer_state.json``, which the Trainer writes last).

Data is streamed into an Arrow file under ``OUT/<stage>/dataset-cache/`` (removed when the stage finishes), so the set's
size does not bound memory. Under ``torchrun --nproc_per_node N`` (or ``accelerate launch``) the Trainer runs DDP (gloo
on CPU, NCCL on GPUs); rank 0 alone claims the output, deletes partial checkpoints, builds the dataset first (the others
then read its cache) and writes the final model, metrics and markers, and every rank waits for it at the end of a stage.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import time
from pathlib import Path

from curation.core.errors import CurationError

from .config import PosttrainConfig

STAGES = ("sft", "dpo")


def rank() -> int:
    """This process's global rank under torchrun / accelerate launch (0 when not distributed)."""
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def _barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def _device(cfg: PosttrainConfig) -> str:
    import torch

    device = cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and "LOCAL_RANK" in os.environ:  # one GPU per process, not every copy on GPU 0
        device = f"cuda:{os.environ['LOCAL_RANK']}"
    return device


def _precision(stage_cfg, device: str) -> dict:
    import torch

    p = stage_cfg.precision
    if p == "auto":
        p = "bf16" if device.startswith("cuda") and torch.cuda.is_bf16_supported() else "fp32"
    if p != "fp32" and not device.startswith("cuda"):
        raise CurationError(f"precision {p} needs a GPU; set precision: fp32 (or auto) for CPU runs")
    return {"bf16": p == "bf16", "fp16": p == "fp16"}


def latest_checkpoint(ckpt_dir: Path, prune: bool = True) -> Path | None:
    """Newest complete checkpoint; incomplete ones (killed mid-save) are removed (``prune``: rank 0 only) so the
    Trainer never sees them."""
    if not ckpt_dir.is_dir():
        return None
    found = sorted(
        (int(p.name.split("-")[-1]), p) for p in ckpt_dir.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()
    )
    best = None
    for _step, p in found:
        if (p / "trainer_state.json").exists():
            best = p
    for step, p in found:
        if prune and (best is None or step > int(best.name.split("-")[-1])):
            shutil.rmtree(p, ignore_errors=True)
    return best


def _metrics_callback(path: Path, resume_step: int, samples_per_step: int):
    from transformers import TrainerCallback

    from train.metrics import MetricsLog

    class JsonlMetrics(TrainerCallback):
        """metrics.jsonl as in pretraining (`iteration` first); measures samples/s between logged steps."""

        def __init__(self):
            self.log = MetricsLog(path, resume_step, enabled=rank() == 0)  # one writer under DDP
            self.t_first = self.t_last = None
            self.step_first = self.step_last = 0
            self.delay = float(os.environ.get("CURATE_POSTTRAIN_STEP_DELAY", "0") or 0)  # tests: keep a run alive

        def on_step_end(self, args, state, control, **kw):
            now = time.perf_counter()
            if self.t_first is None:  # the first step includes warm-up; throughput counts from its end
                self.t_first, self.step_first = now, state.global_step
            self.t_last, self.step_last = now, state.global_step
            if self.delay:
                time.sleep(self.delay)

        def samples_per_s(self) -> float | None:
            if self.t_first is None or self.step_last <= self.step_first:
                return None
            return (
                (self.step_last - self.step_first)
                * samples_per_step
                / (self.t_last - self.t_first - self.delay * (self.step_last - self.step_first))
            )

        def on_log(self, args, state, control, logs=None, **kw):
            logs = logs or {}
            if "train_runtime" in logs:
                return
            rec = {"iteration": state.global_step}
            for k, v in logs.items():
                if isinstance(v, (int, float)):
                    rec["lr" if k == "learning_rate" else k.replace("/", "_")] = float(v)
            sps = self.samples_per_s()
            if sps:
                rec["samples_per_s"] = sps
            self.log.log(rec)

        def on_train_end(self, args, state, control, **kw):
            self.log.close()

    return JsonlMetrics()


def _load_model(path: Path, device: str):
    from transformers import AutoModelForCausalLM

    try:
        return AutoModelForCausalLM.from_pretrained(str(path), dtype="float32").to(device)
    except (OSError, ValueError) as e:
        raise CurationError(
            f"{path}: cannot load a causal LM ({str(e).splitlines()[0]}); pass a Hugging Face model directory"
        ) from None


def eval_commands(
    base: str, model: str | Path, items: list[str], out: Path, condition: str, ev=None, seed: int = 0
) -> list[str]:
    """The commands `evaluate` runs, with every option and limit it uses (``ev``: the config's eval section)."""
    q = shlex.quote
    its = " ".join(f"--items {q(i)}" for i in (items or ["ITEMS.jsonl"]))
    if ev is not None:
        its += f" --mode {ev.mode} --batch-size {ev.batch_size} --seed {seed}"
        its += f" --limit-per-file {ev.limit_per_file}" if ev.limit_per_file else ""
    return [
        f"curate eval propensity --model {q(str(base))} {its} --output {q(str(out / 'eval' / 'base'))} "
        f"--tag base --condition {q(condition)}",
        f"curate eval propensity --model {q(str(model))} {its} --output {q(str(out / 'eval' / 'posttrained'))} "
        f"--tag posttrained --condition {q(condition)}",
        f"curate eval report {q(str(out / 'eval' / 'base'))} {q(str(out / 'eval' / 'posttrained'))} "
        f"-o {q(str(out / 'eval' / 'report'))}",
    ]


def claim_output(cfg: PosttrainConfig):
    """cfg.output as a `curate train posttrain` output (curation/core/outputs.py): never the starting model or the data,
    never a directory of someone else's files. Its stages resume; a different config there is refused per stage."""
    from curation.core.outputs import claim

    inputs = [p for p in [cfg.model, *cfg.sft.data, *cfg.dpo.data] if p != "demo" and os.path.exists(str(p))]
    return claim(cfg.output, "train posttrain", inputs=inputs, flag=f"`output` in {cfg.origin}")


def run_stage(cfg: PosttrainConfig, stage: str, init: str | None = None, progress: bool = True) -> dict:
    """Train one stage (sft or dpo) from `init` (default cfg.model); returns a summary dict (also in run.json)."""
    from curation.lm.loading import hf_directory, load_tokenizer

    from .data import build_dataset
    from .templates import apply

    sc = getattr(cfg, stage)
    main = rank() == 0
    out = Path(cfg.output) / stage
    final = out / "model"
    ckpts = out / "checkpoints"
    chash = cfg.stage_hash(stage)
    init_dir = hf_directory(init or cfg.model)

    for marker in (final / "posttrain.json", out / "run.json"):
        if marker.exists():
            prev = json.loads(marker.read_text())
            if prev.get("config_hash") != chash or prev.get("init") != str(init_dir):
                raise CurationError(
                    f"{out}: holds a {stage} run with a different config or starting model; "
                    f"set a new `output` in {cfg.origin} or delete {out}"
                )
    if (final / "posttrain.json").exists():
        done = (
            json.loads((final / "run.json").read_text())
            if (final / "run.json").exists()
            else json.loads(out.joinpath("run.json").read_text())
        )
        done["skipped"] = True
        return done

    device = _device(cfg)
    world = world_size()
    import torch
    from transformers import set_seed

    common = dict(
        output_dir=str(ckpts),
        max_steps=sc.steps,
        num_train_epochs=sc.epochs,
        per_device_train_batch_size=sc.batch_size,
        gradient_accumulation_steps=sc.grad_accum,
        learning_rate=sc.lr,
        lr_scheduler_type=sc.lr_scheduler,
        warmup_steps=sc.warmup_ratio,  # transformers 5: a value below 1 is a ratio of the total steps
        weight_decay=sc.weight_decay,
        max_grad_norm=sc.max_grad_norm,
        max_length=sc.max_length,
        save_strategy="steps",
        save_steps=sc.save_steps,
        save_total_limit=sc.save_total_limit,
        logging_steps=sc.logging_steps,
        logging_first_step=True,
        report_to="none",
        seed=cfg.seed,
        data_seed=cfg.seed,
        activation_checkpointing=sc.gradient_checkpointing,
        use_cpu=not device.startswith("cuda"),
        disable_tqdm=not progress,
        dataloader_num_workers=0,
        dataset_num_proc=None,
        **_precision(sc, device),
    )
    if world > 1:
        common["ddp_backend"] = "nccl" if device.startswith("cuda") else "gloo"
    try:
        if stage == "sft":
            from trl import SFTConfig

            args = SFTConfig(
                packing=sc.packing,
                packing_strategy=sc.packing_strategy,
                assistant_only_loss=sc.assistant_only_loss,
                **common,
            )
        else:
            from trl import DPOConfig

            args = DPOConfig(beta=sc.beta, loss_type=[sc.loss_type], **common)
        args.device  # noqa: B018 - sets up the process group under torchrun before the rank-0-first block below
    except ValueError as e:
        raise CurationError(
            f"{cfg.origin}: TRL rejected the {stage} setup ({str(e).splitlines()[0]}); fix the `{stage}` section"
        ) from None

    with args.main_process_first(local=False, desc=f"{stage} output and dataset"):
        if main:
            claim_output(cfg).own(stage, tree=True)
        resume = latest_checkpoint(ckpts, prune=main)
        if main:
            out.mkdir(parents=True, exist_ok=True)
            (out / "run.json").write_text(
                json.dumps({"stage": stage, "config_hash": chash, "init": str(init_dir), "status": "running"}, indent=1)
            )
        dataset = build_dataset(
            sc.data,
            stage,
            out / "dataset-cache",
            cfg.chat_template.system_prompt,
            sc.limit,
            sc.split,
            sc.split_eval_share,
            sc.split_seed,
            progress=progress and main,
        )

    set_seed(cfg.seed)
    tok = apply(cfg.chat_template, load_tokenizer(init_dir))
    model = _load_model(init_dir, device)
    samples_per_step = sc.batch_size * sc.grad_accum * world
    cb = _metrics_callback(out / "metrics.jsonl", int(resume.name.split("-")[-1]) if resume else 0, samples_per_step)

    try:
        if stage == "sft":
            from trl import SFTTrainer

            trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tok, callbacks=[cb])
        else:
            from trl import DPOTrainer

            # TRL 1.16 reloads a missing reference from model.config._name_or_path, which is empty for an in-memory
            # model: always pass the reference explicitly (the starting checkpoint, frozen).
            ref = _load_model(init_dir, device).eval()
            trainer = DPOTrainer(
                model=model, ref_model=ref, args=args, train_dataset=dataset, processing_class=tok, callbacks=[cb]
            )
    except ValueError as e:
        raise CurationError(
            f"{cfg.origin}: TRL rejected the {stage} setup ({str(e).splitlines()[0]}); fix the `{stage}` section"
        ) from None

    t0 = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    seconds = time.perf_counter() - t0
    ranks = [{"rank": rank(), "pid": os.getpid(), "device": str(trainer.args.device)}]
    if world > 1:  # every rank reports in: proof that all of them trained to the end
        import torch.distributed as dist

        ranks = [None] * world
        dist.all_gather_object(ranks, {"rank": rank(), "pid": os.getpid(), "device": str(trainer.args.device)})

    tmp = out / ".model-tmp"
    if main:
        shutil.rmtree(tmp, ignore_errors=True)
    trainer.save_model(str(tmp))  # every rank calls it (sharded setups gather); rank 0 writes
    steps = trainer.state.global_step
    summary = {
        "stage": stage,
        "config_hash": chash,
        "init": str(init_dir),
        "status": "done",
        "model": str(final),
        "condition": cfg.condition,
        "tag": "posttrained",
        "base_model": cfg.model,
        "seed": cfg.seed,
        "examples": len(dataset),
        "steps": steps,
        "resumed_from": str(resume) if resume else None,
        "final_loss": next((h["loss"] for h in reversed(trainer.state.log_history) if "loss" in h), None),
        "seconds": seconds,
        "samples_per_s": cb.samples_per_s(),
        "trainer_samples_per_s": result.metrics.get("train_samples_per_second"),
        "samples_per_step": samples_per_step,
        "world_size": world,
        "ranks": ranks,
        "device": device,
        "torch": torch.__version__,
        "chat_template": cfg.chat_template.style,
        "assistant_marker": cfg.chat_template.assistant_marker,
    }
    if main:
        tok.save_pretrained(str(tmp))
        (tmp / "posttrain.json").write_text(json.dumps(summary, indent=1))
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        (out / "run.json").write_text(json.dumps(summary, indent=1))
        if not sc.keep_checkpoints:  # they exist to resume a killed stage; a finished one is skipped, never resumed
            shutil.rmtree(ckpts, ignore_errors=True)
    del trainer, model, dataset
    _barrier()  # the next stage (or the caller) reads what rank 0 just wrote
    if main:
        shutil.rmtree(out / "dataset-cache", ignore_errors=True)  # derived from the data; rebuilt on a rerun
    return summary


def posttrain(cfg: PosttrainConfig, progress: bool = True) -> dict:
    """SFT, then DPO from the SFT model (reference = the SFT model), then tags the result.

    Evaluating it is the evals stage's work: `curate.workflows.posttrain_and_evaluate` runs both."""
    sft = run_stage(cfg, "sft", progress=progress)
    dpo = run_stage(cfg, "dpo", init=sft["model"], progress=progress)
    out = Path(cfg.output)
    cmds = eval_commands(cfg.model, dpo["model"], cfg.eval.items, out, cfg.condition, cfg.eval, cfg.seed)
    res = {
        "condition": cfg.condition,
        "tag": "posttrained",
        "base_model": cfg.model,
        "model": dpo["model"],
        "sft": {k: sft.get(k) for k in ("model", "steps", "samples_per_s", "final_loss", "resumed_from", "skipped")},
        "dpo": {k: dpo.get(k) for k in ("model", "steps", "samples_per_s", "final_loss", "resumed_from", "skipped")},
        "eval_commands": cmds,
    }
    if rank() == 0:
        owned = claim_output(cfg)
        owned.own("posttrain.json")
        (out / "posttrain.json").write_text(json.dumps(res, indent=1))
    return res
