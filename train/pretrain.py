"""`curate train pretrain CONFIG.yaml`: the training loop (pretraining, midtraining, continued pretraining).

Start-up order: distributed state -> the checkpoint to resume (``<save_dir>/checkpoints/latest.json``) or, for a
fresh run, the base run it continues (``train.continue_from``) or the checkpoint whose weights start it
(``train.init_from``) -> model, engine, data -> steps.
A resumed run restores model, optimizer and iteration; the data order depends only on the iteration (train.data),
so the loss curve continues exactly where the killed run's last checkpoint left it. A continued run (midtraining)
restores the same from another run's checkpoint, keeps its LR schedule, and reads its own data from the first sample.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import yaml

from curation.core.errors import CurationError
from train import checkpoint, distributed
from train.config import ModelConfig, PretrainConfig
from train.data import build_train_dataset, global_batch, resolve_blend
from train.engine import token_loss
from train.metrics import MetricsLog, peak_tflops
from train.model import build_model, flops_per_token, layer_spec_name, pad_vocab
from train.schedule import lr_at


def _tokens_info(cfg: PretrainConfig, origin: str) -> tuple[int, int, str]:
    """(eod id, tokenizer vocab size, tokenizer spec): from blend.json when it records them, else the tokenizer."""
    _, _, raw = resolve_blend(cfg.data, origin)
    if "eod" in raw and "vocab_size" in raw:
        # the directory the tokens were made with, where it exists; on another machine (tokens made here, trained on a
        # GPU machine) the spec it was resolved from, which the checkpoint's conversion can resolve again there
        tok = raw.get("tokenizer")
        if not tok or not Path(tok).exists():
            tok = raw.get("tokenizer_spec") or cfg.data.tokenizer
        return int(raw["eod"]), int(raw["vocab_size"]), str(tok)
    from train.tokenize import resolve_tokenizer

    tdir, tok = resolve_tokenizer(cfg.data.tokenizer)
    return int(tok.eos_token_id), len(tok), str(tdir)


INIT_LOSS_RATIO = 1.5  # train.init_loss_check: steps 1 and 2 may be at most this multiple of the start's loss,
CHANCE_FRACTION = 0.98  # and the start's must be below this fraction of chance (ln V: a random init scores ~ln V)


def batch_loss(model, micro_batches: list[dict], dist) -> float:
    """The mean token loss of `model` on one global batch, forward only: no gradient, no optimizer, the same average
    the engines report for a step (per micro-batch, then over micro-batches and data-parallel ranks). Pipeline
    parallel 1 only (a stage without the output layer has no loss)."""
    was = model.training
    model.eval()
    with torch.no_grad():
        loss = sum(
            float(
                token_loss(
                    model(b["tokens"], b["position_ids"], b.get("attention_mask"), labels=b["labels"]), b["loss_mask"]
                )
            )
            for b in micro_batches
        ) / len(micro_batches)
    model.train(was)
    if dist.dp > 1:
        from megatron.core import parallel_state as ps

        t = torch.tensor([loss], device=dist.device)
        torch.distributed.all_reduce(t, group=ps.get_data_parallel_group())
        loss = float(t.item()) / dist.dp
    return loss


def check_start_loss(start: float, tok_vocab: int, init_dir, common: dict, data_tokenizer: str) -> None:
    """The starting model must predict the data better than chance (a uniform guess over the tokenizer, ln V, which
    is also what a randomly initialised model scores), with a margin of 2%."""
    chance = math.log(tok_vocab)
    if start >= CHANCE_FRACTION * chance:
        raise CurationError(
            f"train.init_from {init_dir}: the starting model's loss on the first batch is {start:.3f}, no better than "
            f"chance (ln {tok_vocab} = {chance:.3f}; limit {CHANCE_FRACTION:.0%} of it), so it is not a trained model "
            f"of this data: a wrong or untrained checkpoint, or a tokenizer mismatch (checkpoint: "
            f"{common.get('tokenizer')}, data: {data_tokenizer}); "
            "point init_from at the trained run or converted model, or tokenize the mix with the checkpoint's "
            "tokenizer (train.init_loss_check: false skips this check)"
        )


def check_step_loss(step: int, loss: float, start: float, init_dir) -> None:
    """A step's loss against the starting model's own loss on the same batch, measured before the engine was built.
    Step 1's forward comes before any update: far above the start, the engine trains other weights than the loaded
    ones. Step 2's comes after one small warm-up update: far above, that update replaced the weights (the H200 bug:
    weights loaded after the optimizer was built were overwritten by its copy of the random init)."""
    if loss > INIT_LOSS_RATIO * start:
        when = "before any update" if step == 1 else "after the first update"
        raise CurationError(
            f"train.init_from {init_dir}: the loss of step {step} ({when}) is {loss:.3f}, {loss / start:.1f}x the "
            f"starting model's own loss {start:.3f} on the same batch (limit {INIT_LOSS_RATIO}x): the weights being "
            "trained are not the checkpoint's (not loaded, or replaced by a random init when the engine and "
            "optimizer were built or at their first step; a wrong checkpoint or tokenizer shows up as a starting "
            "loss near chance instead); load the init_from weights into the model before the engine and optimizer "
            "are built (train/pretrain.py) and rerun (train.init_loss_check: false skips this check)"
        )


SCHEDULE = ("lr", "min_lr", "warmup_steps")


def schedule_of(cfg: dict) -> dict:
    """The LR schedule a (dumped) config trains on: lr_at's inputs, the decay length resolved."""
    o, t = cfg["optim"], cfg["train"]
    return {**{k: o[k] for k in SCHEDULE}, "decay_steps": o.get("decay_steps") or t["steps"]}


def continue_source(cfg: PretrainConfig, origin: str) -> Path:
    """The base run's checkpoint train.continue_from names (train.continue_iteration picks one of its saves)."""
    t = cfg.train
    it_dir = checkpoint.resolve(t.continue_from)
    if t.continue_iteration is not None:
        want = it_dir.parent / f"iter_{t.continue_iteration:07d}"
        if not want.is_dir():
            have = sorted(int(p.name[5:]) for p in it_dir.parent.glob("iter_*") if p.name[5:].isdigit())
            raise CurationError(
                f"{origin}: train.continue_from {t.continue_from} has no checkpoint at train.continue_iteration "
                f"{t.continue_iteration} (saved: {have}); pick one of those, or have the base run save there "
                "(train.save_interval, train.keep_checkpoints)"
            )
        it_dir = want
    return it_dir


def check_continuation(cfg: PretrainConfig, common: dict, it_dir: Path, origin: str) -> None:
    """A continued run needs a trainer checkpoint with optimizer state (a converted model has none) and the base run's
    LR schedule: a different one would jump at the first step, which is no continuation."""
    base = common.get("train_config")
    if not base:  # the trainer's own checkpoints record their config; conversions (train/convert.py) do not
        raise CurationError(
            f"{origin}: train.continue_from {it_dir} is not a `curate train pretrain` checkpoint with optimizer state "
            f"({'converted from ' + str(common['converted_from']) if common.get('converted_from') else 'none saved'}); "
            "continue a trainer run, or start from the model's weights with train.init_from (fresh optimizer: CPT)"
        )
    mine, theirs = schedule_of(json.loads(cfg.model_dump_json())), schedule_of(base)
    diff = {k: (mine[k], theirs[k]) for k in mine if mine[k] != theirs[k]}
    if diff:
        raise CurationError(
            f"{origin}: the LR schedule differs from the base run's at {it_dir} in {diff} (this run, base run); a "
            "continued run keeps the base run's schedule: set the same optim.lr/min_lr/warmup_steps and its schedule "
            "length (train.steps, or optim.decay_steps when the base run stopped early), or use train.init_from for "
            "a fresh schedule (CPT)"
        )


def _progress(enabled: bool, total: int, start: int):
    if not enabled:
        return nullcontext(None)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(
        TextColumn("[bold]train[/bold]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeRemainingColumn(),
        transient=False,
    )


def pretrain(
    cfg: PretrainConfig, origin: str = "config", *, progress: bool = True, lineage: dict | None = None
) -> dict:
    """`lineage` (condition, mix lock, blend, seed, ...: whatever the caller knows) is stored in every checkpoint's
    common state, so a converted model's SOURCE and its evals can name where it came from."""
    t = cfg.train
    if t.threads:
        torch.set_num_threads(t.threads)
    dist = distributed.init(t.tensor_parallel, t.pipeline_parallel, t.seed, origin)
    try:
        return _run(cfg, origin, dist, progress, lineage)
    finally:
        distributed.shutdown()


def _legacy_save_dir(save_dir: Path) -> dict | None:
    """A save_dir written before ownership records (it has the trainer's checkpoints): adopted, so it resumes."""
    if (save_dir / "checkpoints" / "latest.json").is_file() or (save_dir / "config.yaml").is_file():
        return {"files": ["config.yaml", "metrics.jsonl"], "trees": ["checkpoints", "data-cache"]}
    return None


def claim_save_dir(cfg: PretrainConfig, origin: str) -> None:
    """save_dir as a `curate train pretrain` output (curation/core/outputs.py): it resumes from its own checkpoints, is
    never the data or the checkpoint it starts from, and never a directory of someone else's files."""
    from curation.core.outputs import claim

    d = cfg.data
    data = (
        [os.path.dirname(os.path.abspath(d.blend))]
        if d.blend
        else [os.path.dirname(os.path.abspath(p)) for p in d.prefixes or []]
    )
    out = claim(
        cfg.train.save_dir,
        "train pretrain",
        inputs=[*data, cfg.train.init_from, cfg.train.continue_from],
        legacy=_legacy_save_dir,
        flag=f"train.save_dir in {origin}",
    )
    out.own("config.yaml", "metrics.jsonl")
    out.own("checkpoints", "data-cache", tree=True)


def _run(cfg: PretrainConfig, origin: str, dist, progress: bool, lineage: dict | None = None) -> dict:
    t, save_dir = cfg.train, Path(cfg.train.save_dir)
    resume_dir = checkpoint.latest(save_dir)
    init_dir = checkpoint.resolve(t.init_from) if (t.init_from and resume_dir is None) else None
    continue_dir = continue_source(cfg, origin) if (t.continue_from and resume_dir is None) else None
    src = resume_dir or continue_dir or init_dir
    common = checkpoint.read_common(src) if src else {}
    if continue_dir:
        check_continuation(cfg, common, continue_dir, origin)
    model_cfg = cfg.model or ModelConfig(**common["model_config"])
    if common and cfg.model and cfg.model.model_dump() != common["model_config"]:
        diff = {
            k: (v, common["model_config"].get(k))
            for k, v in cfg.model.model_dump().items()
            if common["model_config"].get(k) != v
        }
        raise CurationError(
            f"{origin}: model section differs from checkpoint {src} in {diff} (config, checkpoint); "
            + (
                "a continued run keeps the base run's model: drop the model section or make it the base run's"
                if continue_dir
                else "drop the model section to use the checkpoint's, or start a new save_dir"
            )
        )
    eod, tok_vocab, tok_spec = _tokens_info(cfg, origin)
    vocab_size = model_cfg.vocab_size or int(common.get("vocab_size") or pad_vocab(tok_vocab, t.tensor_parallel))
    if tok_vocab > vocab_size:
        raise CurationError(
            f"{origin}: the tokenizer has {tok_vocab} tokens but the model only {vocab_size}; "
            "raise model.vocab_size or use the model's tokenizer"
        )
    bf16 = t.precision == "bf16" or (t.precision == "auto" and dist.on_gpu)
    if bf16 and not dist.on_gpu:
        raise CurationError(f"{origin}: train.precision bf16 needs a GPU; use fp32 (or auto) on CPU")
    seq = cfg.data.seq_length
    if seq > model_cfg.max_position_embeddings:
        raise CurationError(
            f"{origin}: data.seq_length {seq} exceeds model.max_position_embeddings {model_cfg.max_position_embeddings}"
        )
    if t.global_batch_size % (t.micro_batch_size * dist.dp):
        raise CurationError(
            f"{origin}: train.global_batch_size {t.global_batch_size} is not a multiple of micro_batch_size x "
            f"data-parallel size ({t.micro_batch_size} x {dist.dp})"
        )
    if (
        dist.on_gpu
    ):  # per-GPU memory estimate: refuse a setting that cannot fit before anything is built (train/sizing.py)
        from train.sizing import check_startup

        check_startup(model_cfg, t, seq_length=seq, vocab_size=vocab_size, world_size=dist.world_size, origin=origin)

    model = build_model(
        model_cfg,
        seq_length=seq,
        vocab_size=vocab_size,
        tp=t.tensor_parallel,
        pp=t.pipeline_parallel,
        bf16=bf16,
        recompute=t.recompute,
        on_gpu=dist.on_gpu,
    )
    if init_dir:  # (None when resuming)
        # before the engine: Megatron's mixed-precision optimizer copies the model's weights into its fp32 main params
        # when it is built, and its first step writes those back; weights loaded after it were silently replaced by
        # the random init (seen on an H200: continued pretraining of SmolLM2 started at loss 9.4 instead of ~3)
        loaded = checkpoint.load(init_dir, {"model": model.sharded_state_dict()})
        checkpoint.load_model_state(model, loaded["model"], init_dir)

    def make_engine():
        if dist.on_gpu:
            from train.engine import GpuEngine

            return GpuEngine(model, cfg.optim, t, seq_length=seq, bf16=bf16)
        from train.engine import CpuEngine

        return CpuEngine(model, cfg.optim, t)

    engine, start = None, 0
    if resume_dir or continue_dir:  # the same restore for both: model, optimizer state (moments, step), iteration
        engine = make_engine()
        model_sd = model.sharded_state_dict()
        template = {"model": model_sd}
        opt_t = engine.optimizer_template(model_sd)
        if opt_t:
            template["optimizer"] = opt_t
        loaded = checkpoint.load(resume_dir or continue_dir, template)
        checkpoint.load_model_state(model, loaded["model"], resume_dir or continue_dir)
        engine.load_optimizer_state(loaded)
        start = int(loaded["iteration"])
    # the global batch index where this run's own data starts: a continued run reads its blend from its first sample
    # (iteration `start` of the schedule takes batch 0), and keeps that offset when it resumes after a kill
    data_start = start if continue_dir else int(common.get("data_start", 0)) if resume_dir else 0
    if continue_dir and data_start >= t.steps:
        raise CurationError(
            f"{origin}: train.continue_from {continue_dir} is at iteration {data_start}, not before train.steps "
            f"{t.steps}: nothing is left to train; set train.steps to the base run's schedule length (its "
            "optim.decay_steps, or train.steps) or pick an earlier checkpoint with train.continue_iteration"
        )

    if dist.rank == 0:  # after the config and data checks, before anything is written under save_dir
        claim_save_dir(cfg, origin)
    cache = cfg.data.cache_dir or str(save_dir / "data-cache")
    dataset = build_train_dataset(
        cfg.data,
        num_samples=(t.steps - data_start) * t.global_batch_size,
        eod=eod,
        vocab_size=vocab_size,
        cache_dir=cache,
        origin=origin,
    )
    log = MetricsLog(save_dir / "metrics.jsonl", start, enabled=dist.is_logger)
    if dist.rank == 0:
        save_dir.mkdir(parents=True, exist_ok=True)
        (save_dir / "config.yaml").write_text(yaml.safe_dump(cfg.model_dump(), sort_keys=False))
    # train.init_loss_check: the loaded model's own loss on the first two batches, before the engine and its optimizer
    # exist (two forward passes), against steps 1 and 2
    start_loss: list[float] = []
    if init_dir and t.init_loss_check:
        if t.pipeline_parallel > 1:
            print(
                "warning: train.init_loss_check needs pipeline_parallel 1 (a stage without the output layer has no "
                "loss); skipped",
                file=sys.stderr,
            )
        else:
            start_loss = [
                batch_loss(
                    model,
                    global_batch(
                        dataset, i, t.global_batch_size, t.micro_batch_size, dist.dp_rank, dist.dp, dist.device
                    ),
                    dist,
                )
                for i in range(min(2, t.steps))
            ]
            check_start_loss(start_loss[0], tok_vocab, init_dir, common, tok_spec)
    if engine is None:  # a fresh run: built after the check, so nothing it does to the weights can go unnoticed
        engine = make_engine()
    fpt = flops_per_token(model_cfg, vocab_size, seq)
    peak = peak_tflops(t.peak_tflops)
    tokens_per_step = t.global_batch_size * seq
    common_state = {
        "model_config": model_cfg.model_dump(),
        "vocab_size": vocab_size,
        "tokenizer_vocab_size": tok_vocab,
        "tokenizer": tok_spec,
        "eod": eod,
        "layer_spec": layer_spec_name(dist.on_gpu),
        "train_config": json.loads(cfg.model_dump_json()),
        "lineage": lineage or {},
        "data_start": data_start,
        **({"continued_from": {"checkpoint": str(continue_dir), "iteration": start}} if continue_dir else {}),
        **({"continued_from": common["continued_from"]} if resume_dir and "continued_from" in common else {}),
    }

    def save(iteration: int):
        model_sd = model.sharded_state_dict()
        state = {
            "model": model_sd,
            "optimizer": engine.sharded_optimizer_state(model_sd),
            "iteration": iteration,
            **common_state,
        }
        checkpoint.save(save_dir, iteration, state, dist.rank == 0, keep=t.keep_checkpoints, pinned=t.save_iterations)

    last = {"iteration": start}
    show = progress and dist.is_logger
    with _progress(show, t.steps, start) as bar:
        task = bar.add_task("train", total=t.steps, completed=start, info="") if bar else None
        for it in range(start, t.steps):
            t0 = time.perf_counter()
            lr = lr_at(it, cfg.optim, t.steps)
            engine.set_lr(lr)
            batches = global_batch(
                dataset, it - data_start, t.global_batch_size, t.micro_batch_size, dist.dp_rank, dist.dp, dist.device
            )
            loss, gnorm = engine.step(batches)
            if dist.on_gpu:
                torch.cuda.synchronize()
            dt = time.perf_counter() - t0
            tps = tokens_per_step / dt
            rec = {
                "iteration": it + 1,
                "loss": loss,
                "lr": lr,
                "grad_norm": gnorm,
                "tokens": (it + 1) * tokens_per_step,
                "step_s": dt,
                "tokens_per_s": tps,
                "tokens_per_s_per_device": tps / dist.world_size,
                "mfu": (tps * fpt / (dist.world_size * peak * 1e12)) if peak else None,
            }
            checked = it < len(start_loss)  # a fresh run from init_from: steps 1 and 2 against the start
            if checked:
                ref = start_loss[it]
                rec.update(init_loss=ref, init_loss_ratio=loss / ref)
                if dist.is_logger:
                    print(
                        f"init check, step {it + 1}: the starting model's loss on this batch {ref:.4f}, the step's "
                        f"{loss:.4f} ({loss / ref:.2f}x, limit {INIT_LOSS_RATIO}x)",
                        file=sys.stderr,
                    )
            if checked or (it + 1) % t.log_interval == 0 or it + 1 == t.steps:
                log.log(rec)
            if checked:
                try:
                    check_step_loss(it + 1, loss, ref, init_dir)
                except CurationError:
                    log.close()
                    raise
            last = rec
            if bar:
                bar.update(task, completed=it + 1, info=f"loss {loss:.4f} lr {lr:.2e} {tps:,.0f} tok/s")
            if (it + 1) % t.save_interval == 0 or it + 1 == t.steps or it + 1 in t.save_iterations:
                save(it + 1)
    log.close()
    return {
        "save_dir": str(save_dir),
        "start_iteration": start,
        "resumed": resume_dir is not None,
        "initialised_from": str(init_dir) if init_dir else None,
        "continued_from": str(continue_dir) if continue_dir else None,
        "init_loss": start_loss[0] if start_loss else None,
        **last,
    }
