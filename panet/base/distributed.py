"""torch.distributed glue: one process per device, launched by `torchrun`. Without torchrun
(`launched_processes`) everything runs in one process and these helpers are no-ops.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from typing import Any, NoReturn

import torch
import torch.distributed as dist

from panet.base.device import launched_processes, torchrun_problem, use_device


@dataclass(frozen=True)
class Context:
    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def is_main_process() -> bool:
    """True outside torchrun and on its rank 0 (usable before the process group exists)."""
    return int(os.environ.get("RANK", "0")) == 0


def setup(device: str, tf32: bool = False) -> Context:
    """The process's device (`use_device`) and, under torchrun, the process group (nccl on CUDA,
    gloo on CPU), a CUDA process on cuda:<LOCAL_RANK>; a one-line RuntimeError when torchrun
    started more processes than there are GPUs (`torchrun_problem`)."""
    if launched_processes() == 1:
        return Context(device=use_device(device, tf32))
    problem = torchrun_problem(device)
    if problem:
        raise RuntimeError(problem)
    resolved = use_device(device, tf32, quiet=not is_main_process())
    if resolved.type == "cuda":
        resolved = use_device(f"cuda:{int(os.environ['LOCAL_RANK'])}", tf32, quiet=True)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if resolved.type == "cuda" else "gloo")
    return Context(rank=dist.get_rank(), world_size=dist.get_world_size(), device=resolved)


def teardown(context: Context) -> None:
    if context.distributed and dist.is_initialized():
        dist.destroy_process_group()


def exit_worker(status: Any) -> NoReturn:
    """End this torchrun worker at once with `status` (a `SystemExit` code: None, an int, or a
    message printed to stderr with status 1), output and logs flushed, skipping the
    interpreter's teardown: gloo's threads outlive `destroy_process_group`, and a finished rank
    was seen dying (SIGABRT) while the interpreter destroyed what they use, which torchrun
    reports as a failed job. Run folders need no teardown (atomic files, a kernel lock)."""
    if status is None:
        code = 0
    elif isinstance(status, int):
        code = status
    else:
        print(status, file=sys.stderr)
        code = 1
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def all_reduce_sum(tensor: torch.Tensor, context: Context) -> torch.Tensor:
    """Sum of `tensor` over ranks (in place; returns it)."""
    if context.distributed:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def broadcast_object(value: Any, context: Context) -> Any:
    """Rank 0's `value` (any picklable object) on every rank."""
    if not context.distributed:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_lists(values: list, context: Context) -> list:
    """The concatenation of every rank's list (rank order), on every rank."""
    if not context.distributed:
        return values
    gathered = [None] * context.world_size
    dist.all_gather_object(gathered, values)
    return [value for rank_values in gathered for value in rank_values]
