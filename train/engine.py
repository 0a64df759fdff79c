"""One optimizer step over a global batch: the GPU engine (Megatron DDP, Megatron optimizer, pipeline schedules,
bf16) and the CPU engine (a single process, torch AdamW), behind the same small interface.

Megatron's DDP wrapper, optimizer and pipeline schedules allocate tensors with ``device="cuda"`` literally, so
they cannot run without a GPU; the CPU engine does the same arithmetic (mean token loss per micro-batch averaged
over micro-batches, global-norm clipping, AdamW without weight decay on norms) with plain torch.
"""

from __future__ import annotations

import torch

from train.config import OptimConfig, TrainConfig


def _decay_groups(params_named, weight_decay: float):
    decay, no_decay = [], []
    for name, p in params_named:
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or name.endswith("bias") else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def token_loss(per_token: torch.Tensor, loss_mask: torch.Tensor) -> torch.Tensor:
    mask = loss_mask.reshape(-1).float()
    return (per_token.float().reshape(-1) * mask).sum() / mask.sum().clamp(min=1)


class CpuEngine:
    def __init__(self, model, optim: OptimConfig, train: TrainConfig):
        self.model, self.clip = model, optim.clip_grad
        self.optimizer = torch.optim.AdamW(
            _decay_groups(model.named_parameters(), optim.weight_decay),
            lr=optim.lr,
            betas=(optim.beta1, optim.beta2),
            eps=optim.eps,
        )

    def set_lr(self, lr: float) -> None:
        for g in self.optimizer.param_groups:
            g["lr"] = lr

    def step(self, micro_batches: list[dict]) -> tuple[float, float]:
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        total = 0.0
        for b in micro_batches:
            out = self.model(b["tokens"], b["position_ids"], b.get("attention_mask"), labels=b["labels"])
            loss = token_loss(out, b["loss_mask"]) / len(micro_batches)
            loss.backward()
            total += loss.item()
        grad_norm = torch.nn.utils.clip_grad_norm_(
            self.model.parameters(), self.clip if self.clip > 0 else float("inf")
        )
        self.optimizer.step()
        return total, float(grad_norm)

    # checkpoint hooks: the optimizer state is small and single-process, so it travels as common state
    def sharded_optimizer_state(self, model_sharded: dict) -> dict:
        return {"torch_adamw": self.optimizer.state_dict()}

    def optimizer_template(self, model_sharded: dict) -> dict:
        return {}

    def load_optimizer_state(self, loaded: dict) -> None:
        self.optimizer.load_state_dict(loaded["optimizer"]["torch_adamw"])


class GpuEngine:  # exercised only on CUDA machines (tests skip it without a GPU)
    def __init__(self, model, optim: OptimConfig, train: TrainConfig, *, seq_length: int, bf16: bool):
        from megatron.core.distributed import DistributedDataParallel, DistributedDataParallelConfig
        from megatron.core.optimizer import OptimizerConfig, get_megatron_optimizer
        from megatron.core.pipeline_parallel import get_forward_backward_func

        self.inner = model
        ddp_cfg = DistributedDataParallelConfig(
            grad_reduce_in_fp32=True,
            overlap_grad_reduce=False,
            use_distributed_optimizer=train.use_distributed_optimizer,
        )
        self.model = DistributedDataParallel(config=model.config, ddp_config=ddp_cfg, module=model)
        ocfg = OptimizerConfig(
            optimizer="adam",
            lr=optim.lr,
            min_lr=optim.min_lr,
            weight_decay=optim.weight_decay,
            adam_beta1=optim.beta1,
            adam_beta2=optim.beta2,
            adam_eps=optim.eps,
            clip_grad=optim.clip_grad,
            bf16=bf16,
            params_dtype=torch.bfloat16 if bf16 else torch.float32,
            use_distributed_optimizer=train.use_distributed_optimizer,
        )
        self.optimizer = get_megatron_optimizer(ocfg, [self.model])
        self.fb = get_forward_backward_func()
        self.seq_length, self.mbs = seq_length, train.micro_batch_size

    def set_lr(self, lr: float) -> None:
        for g in self.optimizer.param_groups:
            g["lr"] = lr

    def step(self, micro_batches: list[dict]) -> tuple[float, float]:
        from megatron.core import parallel_state as ps

        self.model.train()
        self.model.zero_grad_buffer()
        self.optimizer.zero_grad()

        def forward_step(data_iterator, model):
            b = next(data_iterator)
            out = model(b["tokens"], b["position_ids"], b.get("attention_mask"), labels=b["labels"])

            def loss_func(output_tensor):
                loss = token_loss(output_tensor, b["loss_mask"])
                reported = loss.detach().clone()
                torch.distributed.all_reduce(reported, group=ps.get_data_parallel_group())
                return loss, {"lm loss": reported / ps.get_data_parallel_world_size()}

            return out, loss_func

        losses = self.fb(
            forward_step_func=forward_step,
            data_iterator=iter(micro_batches),
            model=[self.model],
            num_microbatches=len(micro_batches),
            seq_length=self.seq_length,
            micro_batch_size=self.mbs,
            decoder_seq_length=self.seq_length,
            forward_only=False,
        )
        ok, grad_norm, _ = self.optimizer.step()
        loss = torch.zeros(1, device="cuda")
        if ps.is_pipeline_last_stage():
            loss += sum(x["lm loss"] for x in losses) / len(losses)
        # the loss lives on the last stage; share it so every rank logs the same number
        torch.distributed.all_reduce(loss, group=ps.get_pipeline_model_parallel_group())
        return float(loss.item()), float(grad_norm or 0.0)

    # megatron-core 0.16's default format for the distributed optimizer (fully_sharded_model_space) is deprecated and
    # fails on save ("ShardedTensor.flattened_range is not supported", seen on an H200); dp_reshardable is Megatron-LM's
    # own default: a parallel save with no gather, resumable at another data-parallel size
    _OPTIM_METADATA = {"distrib_optim_sharding_type": "dp_reshardable"}

    def sharded_optimizer_state(self, model_sharded: dict) -> dict:
        return self.optimizer.sharded_state_dict(model_sharded, metadata=self._OPTIM_METADATA)

    def optimizer_template(self, model_sharded: dict) -> dict:
        self._prime_state()
        return self.optimizer.sharded_state_dict(model_sharded, is_loading=True, metadata=self._OPTIM_METADATA)

    def _prime_state(self) -> None:
        """Without Transformer Engine or Apex, Megatron falls back to torch's AdamW, whose state appears only at its
        first step; the distributed optimizer's state_dict then fails on a resume ("assert len(steps) == 1", seen on
        an H200). Megatron's own dummy-state initialisation fills it; the checkpoint's values replace it on load."""
        for opt in getattr(self.optimizer, "chained_optimizers", [self.optimizer]):
            if hasattr(opt, "_init_optimizer_states_with_dummy_values") and not opt.optimizer.state:
                opt._init_optimizer_states_with_dummy_values()

    def load_optimizer_state(self, loaded: dict) -> None:
        self.optimizer.load_state_dict(loaded["optimizer"])
