"""`python -m train ...` (what torchrun launches: `torchrun --nproc-per-node 8 -m train pretrain CONFIG.yaml`)."""

from train.cli import train_app
from train.posttrain.cli import register

register(train_app)  # sft, dpo, posttrain (training only; `curate train posttrain` also evaluates)

if __name__ == "__main__":
    train_app()
