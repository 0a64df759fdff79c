"""`python -m train ...` (what torchrun launches: `torchrun --nproc-per-node 8 -m train pretrain CONFIG.yaml`)."""

from train.cli import train_app

if __name__ == "__main__":
    train_app()
