"""Third-party start-up chatter kept off the user's terminal: Apex/Transformer Engine notices, Megatron and TRL
warnings, transformers' weight-loading bars, tqdm, datatrove's colours. With progress off, every bar goes."""

from __future__ import annotations

import os
import warnings


def quiet_third_party(progress: bool = True) -> None:
    warnings.filterwarnings("ignore", message=".*Transformer Engine and Apex are not installed.*")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module=r"(megatron|torch|trl|transformers)")
    for k, v in (
        ("TOKENIZERS_PARALLELISM", "false"),
        ("TRANSFORMERS_VERBOSITY", "error"),
        ("DATATROVE_COLORIZE_LOGS", "0"),
    ):
        os.environ.setdefault(k, v)
    if not progress:
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("TQDM_DISABLE", "1")
        try:
            from transformers.utils import logging as tlog

            tlog.set_verbosity_error()
            tlog.disable_progress_bar()
        except ImportError:
            pass
