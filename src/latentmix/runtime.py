"""Process-wide runtime settings: torch's CPU threads and OpenMP's wait policy.

The library calls `set_threads` when a command or a grid knows what it will run; only an entry
point (the `latentmix` command, ``python -m latentmix``, the helper processes a sweep starts, all
through `latentmix.cli.main`) calls `prefer_passive_openmp_waiting`, because it changes the
environment of the whole process and must run before torch is imported. Importing this module
changes nothing and does not import torch.
"""

from __future__ import annotations

import os
from typing import Optional

from latentmix.errors import ConfigError


def prefer_passive_openmp_waiting() -> None:
    """Set ``OMP_WAIT_POLICY=PASSIVE`` unless the environment already sets it.

    PyTorch's OpenMP threads spin while they wait for each other; on a CPU shared with other jobs
    they spin against those jobs, and runs get several times slower (docs/fashion-mnist.md,
    Timing). Passive waiting costs nothing measurable on an idle machine. OpenMP reads the variable
    once, when torch loads it, so this must run before ``import torch``; child processes inherit it.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def set_threads(threads: Optional[int], dataset: str) -> None:
    """Tiny models (spirals) spend each step in per-operation overhead, where extra threads only
    add synchronisation (several times slower on a busy 2-core machine): use one unless told."""
    import torch

    if threads is not None:
        if threads < 1:
            raise ConfigError(f"--threads must be >= 1, got {threads}: give a whole number of CPU threads, "
                              "or leave it out for the default")
        torch.set_num_threads(threads)
    elif dataset == "spiral":
        torch.set_num_threads(1)
