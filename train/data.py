"""Training data: Megatron's BlendedMegatronDatasetBuilder + GPTDataset over the tokenised mix, read in a fixed order.

The sample order is a pure function of (data seed, blend, sequence length, number of samples): global batch ``i``
is samples ``[i * GBS, (i + 1) * GBS)`` of the blended dataset, each data-parallel rank taking a contiguous slice.
A resumed run therefore sees exactly the batches an uninterrupted run would have seen.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from curation.core.errors import CurationError
from train.config import DataConfig


@dataclass
class _TokenizerInfo:
    """What GPTDataset needs from a tokenizer: the end-of-document id (no pad id: nothing is padded)."""

    eod: int
    vocab_size: int

    @property
    def unique_identifiers(self) -> dict:  # part of the dataset cache key
        return {"class": "TokenizerInfo", "eod": self.eod, "vocab_size": self.vocab_size}


def resolve_blend(data: DataConfig, origin: str) -> tuple[list[str], list[float] | None, dict]:
    from train.tokenize import read_blend

    if data.blend:
        return read_blend(data.blend)
    for p in data.prefixes or []:
        if not (Path(p + ".bin").exists() and Path(p + ".idx").exists()):
            raise CurationError(
                f"{origin}: data.prefixes entry {p} has no .bin/.idx; run `curate train tokenize` first"
            )
    return list(data.prefixes or []), data.weights, {}


def build_train_dataset(
    data: DataConfig, *, num_samples: int, eod: int, vocab_size: int, cache_dir: str, origin: str = "config"
):
    from megatron.core.datasets.blended_megatron_dataset_builder import BlendedMegatronDatasetBuilder
    from megatron.core.datasets.gpt_dataset import GPTDataset, GPTDatasetConfig

    prefixes, weights, _ = resolve_blend(data, origin)
    if len(prefixes) == 1:
        weights = None  # a single dataset takes no weight
    cfg = GPTDatasetConfig(
        random_seed=data.seed,
        sequence_length=data.seq_length,
        blend=(prefixes, weights),
        split=data.split,
        path_to_cache=cache_dir,
        tokenizer=_TokenizerInfo(eod, vocab_size),
        reset_position_ids=False,
        reset_attention_mask=False,
        eod_mask_loss=False,
        # causal only: both layer specs (TE's, and the local one's SdpaAttention) need no mask
        create_attention_mask=False,
        mid_level_dataset_surplus=0.05,
    )

    # every rank reads its own batches; the builder writes the index cache on rank 0 first, then the others load it
    train, _, _ = BlendedMegatronDatasetBuilder(GPTDataset, [num_samples, 0, 0], lambda: True, cfg).build()
    if train is None or len(train) < num_samples:
        raise CurationError(
            f"{origin}: the blend yields {0 if train is None else len(train)} samples, {num_samples} needed; "
            "check data.split"
        )
    return train


def global_batch(
    dataset, iteration: int, global_batch_size: int, micro_batch_size: int, dp_rank: int, dp_size: int, device: str
) -> list[dict]:
    """This rank's micro-batches of global batch ``iteration``."""
    per_rank = global_batch_size // dp_size
    start = iteration * global_batch_size + dp_rank * per_rank
    out = []
    for m in range(0, per_rank, micro_batch_size):
        samples = [dataset[start + m + j] for j in range(micro_batch_size)]
        batch = {}
        for key in ("tokens", "labels", "loss_mask", "position_ids", "attention_mask"):
            if key in samples[0] and samples[0][key] is not None:
                batch[key] = torch.stack([s[key] for s in samples]).to(device, non_blocking=True)
        out.append(batch)
    return out
