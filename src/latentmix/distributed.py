"""Data-parallel training of one run over several processes (``torchrun``), see docs/distributed.md.

``torchrun --nproc_per_node=K -m latentmix train ...`` starts K copies of the command; each reads
its place from the environment torchrun sets (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``,
``MASTER_ADDR``/``MASTER_PORT``). `distributed_run` turns that environment into a `DistContext`
(and a process group: gloo on the CPU, NCCL with device ``cuda:LOCAL_RANK`` on GPUs); the training
loop asks the context for its share of the work and for the few collectives it needs:

* every process draws the same global batch order and mixing draws from the run's streams (same
  seed), and `shard` gives it a contiguous slice of each global batch;
* the mixed forward runs through `DistributedDataParallel`, which averages the gradients;
* the per-sample losses of the tracking pass are gathered back into sample order
  (`gather_by_index`), so every process fits the same noise model; correct counts and loss sums
  are summed (`all_reduce_sum`).

Outside torchrun the context is a single process (world size 1) and every helper is the identity,
so the one-process run is the same computation as before.
"""

from __future__ import annotations

import copy
import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator, Optional, Sequence

import torch

from latentmix.errors import ConfigError

if TYPE_CHECKING:
    from latentmix.mixing import LatentMixer

TORCHRUN_VARIABLES = ("WORLD_SIZE", "RANK", "LOCAL_RANK")


@dataclass(frozen=True)
class DistContext:
    """This process's place in a data-parallel run. `device` is the device it trains on."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        """Whether this process writes the run's files (metrics, results, checkpoints) and prints."""
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    # ---- work sharing ---------------------------------------------------------------------

    def check_batch_size(self, batch_size: int) -> None:
        """The global batch must split evenly: each process trains on batch_size / world_size."""
        if batch_size % self.world_size:
            raise ConfigError(
                f"--batch-size {batch_size} is the global batch and must be divisible by the number of "
                f"processes ({self.world_size}); e.g. use --batch-size {batch_size - batch_size % self.world_size or self.world_size}"
            )

    def even_batches(self, batches: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """The epoch's global batches with a short last batch cut to a multiple of the world size
        (at most world_size - 1 samples left out of that epoch; they change with the shuffle), so
        that every process takes equal steps on equal shards. One process: unchanged."""
        batches = list(batches)
        if self.world_size == 1 or not batches:
            return batches
        last = batches[-1]
        keep = len(last) - len(last) % self.world_size
        return batches[:-1] + ([last[:keep]] if keep > 0 else [])

    def shard(self, size: int) -> slice:
        """This process's contiguous part of `size` items (the parts differ by at most one)."""
        return slice(self.rank * size // self.world_size, (self.rank + 1) * size // self.world_size)

    # ---- collectives (identities for one process) --------------------------------------------

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """The sum of `tensor` over all processes (a new tensor; the input is left alone)."""
        if not self.is_distributed:
            return tensor
        total = tensor.detach().clone()
        torch.distributed.all_reduce(total, op=torch.distributed.ReduceOp.SUM)
        return total

    def all_gather(self, values: torch.Tensor) -> torch.Tensor:
        """The tensors of all processes concatenated along the first axis in rank order (lengths
        may differ; the other axes must agree)."""
        if not self.is_distributed:
            return values
        if values.dim() < 1:
            raise ValueError(f"all_gather takes a tensor with at least one axis, got shape {tuple(values.shape)}")
        length = torch.tensor([values.shape[0]], device=values.device, dtype=torch.int64)
        lengths = [torch.zeros_like(length) for _ in range(self.world_size)]
        torch.distributed.all_gather(lengths, length)
        sizes = [int(n) for n in lengths]
        longest = max(sizes)
        padded = torch.zeros((longest, *values.shape[1:]), dtype=values.dtype, device=values.device)
        padded[: values.shape[0]] = values
        parts = [torch.empty_like(padded) for _ in range(self.world_size)]
        torch.distributed.all_gather(parts, padded)
        return torch.cat([part[:size] for part, size in zip(parts, sizes)])

    def gather_by_index(self, values: torch.Tensor, indices: torch.Tensor, total: int) -> torch.Tensor:
        """Per-sample `values` (one row each) of this process's samples `indices`, gathered from
        all processes into one (total, ...) tensor in sample order (every sample must be held by one process; a
        single process holds them all, in order, and gets `values` back)."""
        if not self.is_distributed:
            return values
        all_values, all_indices = self.all_gather(values), self.all_gather(indices)
        if all_indices.shape[0] != total:
            raise RuntimeError(f"gathered {all_indices.shape[0]} per-sample values, expected {total}")
        result = torch.empty((total, *values.shape[1:]), dtype=values.dtype, device=values.device)
        result[all_indices] = all_values
        return result

    # ---- the model -------------------------------------------------------------------------

    def wrap_mixer(self, mixer: "LatentMixer") -> "LatentMixer":
        """A mixer whose mixed forward runs through `DistributedDataParallel` (gradients averaged
        over the processes). Its mix points stay on the inner model's submodules, which DDP's
        forward calls. DDP broadcasts rank 0's parameters and buffers when it is built, so wrap
        after loading a checkpoint. One process: the mixer itself."""
        if not self.is_distributed:
            return mixer
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [self.device.index] if self.device.type == "cuda" else None
        wrapped = copy.copy(mixer)
        wrapped.model = DistributedDataParallel(mixer.model, device_ids=device_ids)
        return wrapped


def single_process(device: torch.device) -> DistContext:
    return DistContext(rank=0, world_size=1, local_rank=0, device=device)


ONE_PROCESS = DistContext()  # the default of helpers that take a context: no sharding, no collectives


def launched_by_torchrun() -> bool:
    return all(name in os.environ for name in TORCHRUN_VARIABLES)


def init_distributed(device_name: str = "auto") -> DistContext:
    """Join the process group torchrun describes in the environment. `device_name` is auto, cpu
    or cuda: the process trains on ``cuda:LOCAL_RANK`` (NCCL) or the CPU (gloo)."""
    import torch.distributed as dist

    if not dist.is_available():
        raise ConfigError("this PyTorch build has no torch.distributed; run without torchrun")
    rank, world_size, local_rank = (int(os.environ[name]) for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))
    device = _rank_device(device_name, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl", device_id=device)
    else:
        dist.init_process_group(backend="gloo")
    if dist.get_world_size() != world_size or dist.get_rank() != rank:
        raise RuntimeError("the process group disagrees with WORLD_SIZE/RANK of the environment")
    return DistContext(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def cleanup_distributed() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


@contextmanager
def distributed_run(device_name: str = "auto") -> Iterator[Optional[DistContext]]:
    """Under torchrun: the process group's context, torn down on exit. Otherwise: None (the
    training loop then runs as one process on `device_name`)."""
    if not launched_by_torchrun():
        yield None
        return
    context = init_distributed(device_name)
    try:
        yield context
    except BaseException:
        cleanup_distributed()  # a failed rank leaves at once: waiting for the others could hang
        raise
    # every rank finished: meet before the group is torn down, so that no rank leaves while a peer's
    # gloo worker still waits on it. Before that, collect the finished run's garbage: a
    # DistributedDataParallel wrapper that has run a backward keeps itself alive in a reference cycle,
    # and freed by the garbage collector at interpreter exit, after the group is gone, its gloo work
    # can abort the process ("terminate called without an active exception" after a finished run, a
    # rank exiting -6: seen in CI; pytorch/pytorch#179291 describes gloo work freed at finalization)
    import gc

    import torch.distributed as dist

    gc.collect()
    dist.barrier()
    cleanup_distributed()


def _rank_device(name: str, local_rank: int) -> torch.device:
    kind = name.split(":")[0]
    if kind == "auto":
        kind = "cuda" if torch.cuda.is_available() else "cpu"
    if kind == "cpu":
        return torch.device("cpu")
    if kind != "cuda":
        raise ConfigError(f"unknown device {name!r}: under torchrun use auto, cpu or cuda")
    if ":" in name:
        raise ConfigError(f"under torchrun each process uses cuda:LOCAL_RANK; pass --device cuda, not {name!r}")
    if not torch.cuda.is_available():
        raise ConfigError("device cuda was asked for but no CUDA GPU is available; use --device cpu")
    if local_rank >= torch.cuda.device_count():
        raise ConfigError(f"LOCAL_RANK {local_rank} has no GPU (this machine has {torch.cuda.device_count()}); "
                          "start at most that many processes per node")
    return torch.device("cuda", local_rank)
