"""torch.distributed glue: one process per device, launched by `torchrun`.

Without torchrun (no WORLD_SIZE in the environment: `launched_processes`, read in
`panet.base.device`, which checks the devices of torchrun's processes) everything runs in one
process and these helpers reduce to no-ops, so single-device code paths stay the plain ones.
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
    """The process's device (`panet.base.device.use_device`: current CUDA device, float32 mode) and,
    when launched by torchrun, the process group (nccl on CUDA, gloo on CPU); under torchrun a
    CUDA process computes on cuda:<LOCAL_RANK>. Raises RuntimeError (one line) when torchrun
    started more processes than there are GPUs (`panet.base.device.torchrun_problem`)."""
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
    """End this torchrun worker at once with `status` (a `SystemExit` code: None for success,
    an int, or anything else printed to stderr with status 1), after flushing its output and
    logs, without the interpreter's own teardown.

    torch's gloo process group keeps its threads (pt_gloo_runloop, gloo_tcp_loop) after
    `destroy_process_group`, and they are still running while the exiting interpreter destroys
    the objects they use. A rank whose run had completed was seen dying there (SIGABRT,
    "terminate called without an active exception"), which torchrun reports as a failed job and
    answers by killing the other ranks. Run folders need no teardown: their files are written
    atomically and their lock is dropped by the kernel."""
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
    """Sum of `tensor` over ranks (in place; returns it). Identity in a single process."""
    if context.distributed:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def broadcast_object(value: Any, context: Context) -> Any:
    """Rank 0's `value` (any picklable object) on every rank. Identity in a single process."""
    if not context.distributed:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_lists(values: list, context: Context) -> list:
    """The concatenation of every rank's list (rank order), on every rank. Identity in a single
    process."""
    if not context.distributed:
        return values
    gathered = [None] * context.world_size
    dist.all_gather_object(gathered, values)
    return [value for rank_values in gathered for value in rank_values]
