"""Shared set-up of the retrieval tests: never touch the network, keep torch on few threads."""

import os

# A test that downloads is a bug (spec 7): make any hub access fail at once.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402

# The CI machine has 2 cores; more threads than cores only slows the tiny models down (and
# an explicit OMP_NUM_THREADS wins, e.g. 1 while a benchmark runs beside the tests).
torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", min(2, os.cpu_count() or 1))))
