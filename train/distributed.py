"""Process group and Megatron model-parallel state: torchrun's environment when present, else a 1-process group.

The 1-process group (a CPU run, one GPU, convert) touches no network and resolves no name: its rendezvous is an
in-process store (no TCPStore, whose log lines look up the name of 127.0.0.1 from DNS), and gloo and NCCL are told
to use the loopback interface (`GLOO_SOCKET_IFNAME=lo`, `NCCL_SOCKET_IFNAME=lo`, unless set) instead of resolving
this host's name. Only runs launched by torchrun (several processes) rendezvous over TCP at MASTER_ADDR:MASTER_PORT,
as torchrun sets them; set GLOO_SOCKET_IFNAME / NCCL_SOCKET_IFNAME there to keep gloo and NCCL from resolving the
host name. tests/e2e/test_integrity.py::test_item10_* checks that a conversion makes no connection off loopback."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

import torch

from curation.core.errors import CurationError


@dataclass
class Dist:
    rank: int
    world_size: int
    local_rank: int
    tp: int
    pp: int
    dp: int
    dp_rank: int
    on_gpu: bool

    @property
    def device(self) -> str:
        return f"cuda:{self.local_rank}" if self.on_gpu else "cpu"

    @property
    def is_logger(self) -> bool:
        """The rank that logs: last pipeline stage (it has the loss), first tensor and data-parallel rank."""
        from megatron.core import parallel_state as ps

        return ps.is_pipeline_last_stage() and ps.get_tensor_model_parallel_rank() == 0 and self.dp_rank == 0


_OWN_ENV = "ALIGNMENT_PRETRAINING_SINGLE_PROCESS"
_OWN_KEYS = (_OWN_ENV, "RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
_IFNAME_KEYS = ("GLOO_SOCKET_IFNAME", "NCCL_SOCKET_IFNAME")
_set_ifnames: list[str] = []  # the interface variables init() set (and shutdown() removes)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def init(tp: int, pp: int, seed: int, origin: str = "config") -> Dist:
    from megatron.core import parallel_state as ps
    from megatron.core.tensor_parallel.random import model_parallel_cuda_manual_seed

    on_gpu = torch.cuda.is_available()
    own = "WORLD_SIZE" not in os.environ or _OWN_ENV in os.environ
    if own:
        # not launched by torchrun: a one-process group on a fresh port; shutdown() removes these variables again
        # so that child processes (and later calls) do not inherit a stale rendezvous
        os.environ.update(
            {
                _OWN_ENV: "1",
                "RANK": "0",
                "LOCAL_RANK": "0",
                "WORLD_SIZE": "1",
                "MASTER_ADDR": "127.0.0.1",
                "MASTER_PORT": str(_free_port()),
            }
        )
    world, rank, local = int(os.environ["WORLD_SIZE"]), int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", 0))
    if world % (tp * pp):
        raise CurationError(
            f"{origin}: {world} processes cannot hold tensor_parallel={tp} x pipeline_parallel={pp}; "
            f"launch a multiple of {tp * pp} processes with torchrun"
        )
    if not on_gpu and (world > 1 or tp > 1 or pp > 1):
        raise CurationError(
            f"{origin}: without a GPU only one process with tensor_parallel=1 and pipeline_parallel=1 runs; "
            "set both to 1 and launch without torchrun (or run on GPUs)"
        )
    if on_gpu:
        torch.cuda.set_device(local)
    if not torch.distributed.is_initialized():
        backend = "nccl" if on_gpu else "gloo"
        if own:  # one process: an in-process store, the loopback interface; no TCP rendezvous, no name lookups
            for key in _IFNAME_KEYS:
                if key not in os.environ:
                    os.environ[key] = "lo"
                    _set_ifnames.append(key)
            torch.distributed.init_process_group(backend, store=torch.distributed.HashStore(), rank=0, world_size=1)
        else:
            torch.distributed.init_process_group(backend, rank=rank, world_size=world)
    if not ps.model_parallel_is_initialized():
        ps.initialize_model_parallel(tensor_model_parallel_size=tp, pipeline_model_parallel_size=pp)
    torch.manual_seed(seed)
    if on_gpu:
        model_parallel_cuda_manual_seed(seed)
    else:
        from train import cpu_shim

        cpu_shim.seed(seed)
    return Dist(rank, world, local, tp, pp, ps.get_data_parallel_world_size(), ps.get_data_parallel_rank(), on_gpu)


def shutdown() -> None:
    from megatron.core import parallel_state as ps

    if ps.model_parallel_is_initialized():
        ps.destroy_model_parallel()
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    if _OWN_ENV in os.environ:
        for key in _OWN_KEYS:
            os.environ.pop(key, None)
    while _set_ifnames:
        os.environ.pop(_set_ifnames.pop(), None)
