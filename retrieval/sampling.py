"""Seeding and the order of training items: what makes a run reproducible and resumable.

Every training item's random augmentation is seeded by the item and the epoch
(:func:`epoch_item_seeds`, :class:`SeededItems`), every step reseeds the method's own random
stream (:func:`step_seed`), and :class:`EpochSampler` gives each process its share of an
epoch's shuffled order from any batch on. One process and several, or a run resumed in the
middle of an epoch, therefore draw the same numbers as an uninterrupted single-process run.
"""

from __future__ import annotations

import os
import random

import numpy as np
import torch
from torch.utils.data.distributed import DistributedSampler

__all__ = ["seed_everything", "epoch_item_seeds", "step_seed", "EpochSampler", "SeededItems",
           "resolve_workers"]


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)



def epoch_item_seeds(seed: int, epoch: int, n_items: int) -> np.ndarray:
    """The seed of every training item's random augmentation in one epoch, ``(n_items,)``.

    A seed depends on the item and the epoch, not on the process, worker or position that loads
    it, so one process and several draw the same crops, and a resumed epoch draws what it would
    have.
    """
    return np.random.default_rng([int(seed), int(epoch)]).integers(
        0, np.iinfo(np.int64).max, size=int(n_items), dtype=np.int64)


def step_seed(seed: int, epoch: int, rank: int, step: int) -> int:
    """The seed of torch's random stream for one training step of one process (the method's
    own randomness: dropout, sampled views), so that a run resumed at any step draws the same
    numbers as an uninterrupted one."""
    return int(np.random.SeedSequence([seed, epoch, rank, step]).generate_state(1)[0])


class EpochSampler(torch.utils.data.Sampler):
    """This process's share of an epoch's shuffled order, each index with its item seed.

    The permutation is :class:`~torch.utils.data.distributed.DistributedSampler`'s (seeded by
    ``seed`` and the epoch; ``drop_last``), so the union of the processes' local batches is the
    single-process batch. ``set_epoch(epoch, first_batch=k)`` starts the epoch at local batch
    ``k`` (a resumed epoch) without loading the batches before it.
    """

    def __init__(self, n_items: int, world_size: int, rank: int, *, seed: int,
                 local_batch: int) -> None:
        self.order = DistributedSampler(range(n_items), num_replicas=world_size, rank=rank,
                                        shuffle=True, seed=seed, drop_last=True)
        self.seed = int(seed)
        self.local_batch = int(local_batch)
        self.n_items = int(n_items)
        self.set_epoch(0)

    def set_epoch(self, epoch: int, first_batch: int = 0) -> None:
        self.epoch, self.first_batch = int(epoch), int(first_batch)
        self.order.set_epoch(epoch)
        self.seeds = epoch_item_seeds(self.seed, self.epoch, self.n_items)

    @property
    def batches_per_epoch(self) -> int:
        """Local batches of a whole epoch (the loader drops an incomplete last one)."""
        return len(self.order) // self.local_batch

    def __len__(self) -> int:
        return len(self.order) - self.first_batch * self.local_batch

    def __iter__(self):
        indices = list(self.order)[self.first_batch * self.local_batch:]
        return iter([(index, int(self.seeds[index])) for index in indices])


class SeededItems(torch.utils.data.Dataset):
    """Loads ``dataset[index]`` with torch's random stream seeded by the item's own seed.

    Augmentations (random crops) then depend only on the item and the epoch, whichever worker
    or process loads it; the caller's random stream is left untouched.
    """

    def __init__(self, dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key):
        index, seed = key
        # Only the CPU generator: transforms draw from it, and seeding CUDA here would
        # overwrite the training loop's own stream when items load in the main process.
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(seed)
            return self.dataset[index]


def resolve_workers(num_workers: int | None, world_size: int = 1) -> int:
    """DataLoader workers: ``num_workers``, or with None the CPUs this process may use, shared
    by the processes of the run (at most 8 each)."""
    if num_workers is not None:
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        return int(num_workers)
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cpus = os.cpu_count() or 1
    local_processes = int(os.environ.get("LOCAL_WORLD_SIZE", world_size))
    return max(0, min(8, cpus // max(1, local_processes)))
