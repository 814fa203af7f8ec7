"""Data parallelism on ``torch.distributed``: ranks, collectives and length-balanced sharding.

A run launched by ``torchrun --nproc-per-node N -m probes ...`` (or any launcher that sets the
``env://`` variables ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``)
joins one process group: NCCL when CUDA is available (each rank on ``cuda:LOCAL_RANK``), gloo on
CPU. Without those variables everything runs in one process and every collective is a no-op.

Work is split as in data-parallel inference (Li et al. 2020, "PyTorch Distributed", §3: replicas
on disjoint input shards, no communication in the forward pass): the inputs are cut into units
(store shards of consecutive rows, or single conversations for the experts), and the units are
assigned to ranks by the longest-processing-time rule (Graham 1969, "Bounds on multiprocessing
timing anomalies", §3: largest cost first, to the least loaded rank), the cost of a unit being
its number of tokens. The assignment depends only on the costs and the world size, so every rank
computes the same one; the result of a unit does not depend on which rank computed it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

__all__ = [
    "Topology",
    "assign_balanced",
    "current",
    "init_from_env",
    "shutdown",
]


@dataclass(frozen=True)
class Topology:
    """This process's place in the run: ``rank`` of ``world_size`` (``local_rank`` on its node).

    ``distributed`` is true when a ``torch.distributed`` process group carries the collectives;
    otherwise the collectives act as in a one-process run (for ``world_size == 1``) or, in a
    simulated multi-rank setting (tests), :meth:`barrier` is a no-op and the others are refused.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    distributed: bool = False

    def __post_init__(self) -> None:
        if self.world_size < 1:
            raise ValueError(f"world_size: must be positive, got {self.world_size!r}")
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank: must be in [0, {self.world_size}), got {self.rank!r}")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        """Wait until every rank arrives (no-op without a process group)."""
        if self.distributed:
            import torch.distributed as dist

            dist.barrier()

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank (picklable objects)."""
        if not self.distributed:
            self._single("broadcast")
            return obj
        import torch.distributed as dist

        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def all_gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, in rank order, on every rank."""
        if not self.distributed:
            self._single("all_gather")
            return [obj]
        import torch.distributed as dist

        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def _single(self, what: str) -> None:
        if self.world_size != 1:
            raise RuntimeError(f"{what}: needs a torch.distributed process group (world_size > 1)")


def current() -> Topology:
    """The topology of the initialised process group, else a one-process topology."""
    try:
        import torch.distributed as dist
    except ImportError:  # pragma: no cover - torch without distributed support
        return Topology()
    if dist.is_available() and dist.is_initialized():
        return Topology(
            rank=dist.get_rank(),
            world_size=dist.get_world_size(),
            local_rank=int(os.environ.get("LOCAL_RANK", "0")),
            distributed=True,
        )
    return Topology()


def init_from_env(*, backend: str | None = None, timeout_s: float = 7200.0) -> Topology:
    """Join the process group described by torchrun's environment variables, if any.

    ``backend`` defaults to ``"nccl"`` when CUDA is available (the rank's device is set to
    ``cuda:LOCAL_RANK``) and ``"gloo"`` otherwise. ``timeout_s`` bounds how long a rank waits at a
    barrier for the slowest one. Without ``WORLD_SIZE`` > 1 nothing is initialised.
    """
    if timeout_s <= 0:
        raise ValueError(f"timeout_s: must be positive, got {timeout_s!r}")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return current()
    import torch
    import torch.distributed as dist

    if dist.is_initialized():
        return current()
    use_cuda = torch.cuda.is_available()
    chosen = backend or ("nccl" if use_cuda else "gloo")
    if chosen not in ("nccl", "gloo"):
        raise ValueError(f"backend: expected 'nccl' or 'gloo', got {chosen!r}")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    kwargs: dict[str, Any] = {}
    if chosen == "nccl":
        torch.cuda.set_device(local_rank)
        kwargs["device_id"] = torch.device("cuda", local_rank)
    dist.init_process_group(backend=chosen, timeout=timedelta(seconds=timeout_s), **kwargs)
    return current()


def shutdown() -> None:
    """Leave the process group (no-op when none was initialised)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def assign_balanced(costs: Sequence[int], world_size: int) -> list[list[int]]:
    """Unit indices per rank, by the longest-processing-time rule (deterministic ties).

    Units are taken by decreasing cost (ties: lower index first) and each goes to the rank with
    the least total cost so far (ties: lower rank). Each rank's list is in increasing index order.
    """
    if world_size < 1:
        raise ValueError(f"world_size: must be positive, got {world_size!r}")
    if any(c < 0 for c in costs):
        raise ValueError("costs: must be non-negative")
    load = [0] * world_size
    out: list[list[int]] = [[] for _ in range(world_size)]
    for i in sorted(range(len(costs)), key=lambda i: (-costs[i], i)):
        r = min(range(world_size), key=lambda r: (load[r], r))
        out[r].append(i)
        load[r] += int(costs[i])
    return [sorted(x) for x in out]
