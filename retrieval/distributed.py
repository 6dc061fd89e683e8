"""The process group of a distributed run: rank, world size, device, gather and broadcast.

A run launched by ``torchrun`` joins its process group here (``nccl`` on GPU, ``gloo`` on CPU);
without ``WORLD_SIZE`` > 1 everything is the identity of a single process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import distributed as dist

__all__ = ["DistributedContext", "init_distributed", "make_gather", "make_broadcast"]


@dataclass
class DistributedContext:
    """Rank, world size and device of this process (a single process when not launched)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    initialised_here: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def close(self) -> None:
        if self.initialised_here and dist.is_initialized():
            dist.destroy_process_group()


def init_distributed(device: str = "auto") -> DistributedContext:
    """Join the process group that ``torchrun`` describes through its environment variables.

    Without ``WORLD_SIZE`` > 1 this is a single process. The backend is ``nccl`` on CUDA and
    ``gloo`` on the CPU.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    use_cuda = torch.cuda.is_available() if device == "auto" else str(device).startswith("cuda")
    if world_size <= 1:
        chosen = torch.device("cuda" if use_cuda and device == "auto" else
                              (device if device != "auto" else "cpu"))
        return DistributedContext(device=torch.device(chosen))
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    initialised_here = False
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
        initialised_here = True
    if use_cuda:
        torch.cuda.set_device(local_rank)
        chosen = torch.device("cuda", local_rank)
    else:
        chosen = torch.device("cpu")
    return DistributedContext(rank, world_size, local_rank, chosen, initialised_here)


def make_gather(context: DistributedContext):
    """Concatenate a tensor over processes (rank order), differentiably.

    Integer tensors (image ids) are gathered without gradient. In a single process this is
    the identity.
    """
    if not context.distributed:
        return lambda tensor: tensor
    from torch.distributed.nn.functional import all_gather as differentiable_all_gather

    def gather(tensor: torch.Tensor) -> torch.Tensor:
        tensor = tensor.contiguous()
        if not tensor.is_floating_point():
            parts = [torch.empty_like(tensor) for _ in range(context.world_size)]
            dist.all_gather(parts, tensor)
            return torch.cat(parts)
        return torch.cat(differentiable_all_gather(tensor))

    return gather


def make_broadcast(context: DistributedContext):
    """``broadcast(tensor)``: rank 0's values on every process (identity in one process).

    The tensor travels on the process's device (NCCL needs CUDA tensors) and comes back on
    the device it was given on.
    """
    if not context.distributed:
        return lambda tensor: tensor

    def broadcast(tensor: torch.Tensor) -> torch.Tensor:
        moved = tensor.detach().to(context.device).contiguous()
        dist.broadcast(moved, src=0)
        return moved.to(tensor.device)

    return broadcast
