"""The training loop, free of any configuration system. B episodes per step: episode i is a pure
function of i (`panet.data.episodes`), so step t trains on episodes [t*B, (t+1)*B) whatever the
processes or workers, and a resumed run sees what an uninterrupted one would have.
"""

from __future__ import annotations

import math
import signal
from contextlib import contextmanager
from typing import Any, Callable, Dict, Iterator, List, Mapping, NamedTuple, Optional, Tuple

import torch
from torch import nn
from torch.utils.data import DataLoader, Sampler

from panet.base.constants import IGNORE_INDEX
from panet.base.distributed import Context, all_reduce_sum
from panet.data.episodes import to_device
from panet.models.factory import MODEL_INPUTS, own_loss, query_logits
from panet.models.losses import Loss, panet_loss, segmentation_loss
from panet.models.panet import PANetOutput
from panet.models.prototypes import upsample


OPTIMIZERS = {  # name -> (parameter groups, train settings) -> optimizer
    "sgd": lambda groups, train: torch.optim.SGD(groups, lr=train.lr, momentum=train.momentum,
                                                 weight_decay=train.weight_decay),
    "adam": lambda groups, train: torch.optim.Adam(groups, lr=train.lr,
                                                   weight_decay=train.weight_decay),
    "adamw": lambda groups, train: torch.optim.AdamW(groups, lr=train.lr,
                                                     weight_decay=train.weight_decay),
}
POLY_POWER = 0.9  # lr x (1 - t / steps)^0.9: the poly schedule of PFENet, HSNet, BAM
SCHEDULES = {  # name -> (optimizer, train settings) -> schedule, stepped once per step
    "multistep": lambda optimizer, train: torch.optim.lr_scheduler.MultiStepLR(
        optimizer, list(train.milestones), train.gamma),
    "poly": lambda optimizer, train: torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: max(0.0, 1 - step / train.steps) ** POLY_POWER),
    "cosine": lambda optimizer, train: torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=train.steps),
}
FREEZE_CHOICES = ("none", "all")  # train.freeze_encoder, or the name of an encoder level


def parameter_groups(model: nn.Module, train) -> list:
    """The parameter groups the optimizer updates: the model's own `param_groups(train)`, else
    every parameter not frozen. `train.freeze_encoder` stops the gradients of none, all, or the
    encoder levels up to and including the one named (e.g. conv3)."""
    if train.freeze_encoder == "all":
        model.encoder.requires_grad_(False)
    elif train.freeze_encoder != "none":
        levels = list(model.encoder.levels)
        for name in levels[:levels.index(train.freeze_encoder) + 1]:
            model.encoder.levels[name].requires_grad_(False)
    if callable(getattr(model, "param_groups", None)):
        return model.param_groups(train)
    trainable = [parameter for parameter in model.parameters() if parameter.requires_grad]
    return trainable if train.freeze_encoder == "none" else [{"params": trainable}]


class Optimization(NamedTuple):
    """What a step updates besides the weights: optimizer, schedule (stepped once per step) and
    the loss scaler of fp16 (None otherwise); `checkpoint_contents`' keywords."""
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: Optional[torch.amp.GradScaler] = None


def build_optimization(model: nn.Module, train, device: torch.device = torch.device("cpu"),
                       precision: str = "fp32") -> Optimization:
    """The optimizer of `train.optimizer` over `parameter_groups`, the schedule of
    `train.schedule` and, for fp16, a loss scaler on `device` (`TrainSettings`' defaults:
    PROTOCOL §5)."""
    optimizer = OPTIMIZERS[train.optimizer](parameter_groups(model, train), train)
    scheduler = SCHEDULES[train.schedule](optimizer, train)
    scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None
    return Optimization(optimizer, scheduler, scaler)


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; no update was applied for that step."""


class TrainingInterrupted(KeyboardInterrupt):
    """SIGINT/SIGTERM arrived; training stopped after finishing (and saving) a whole step."""


class StepBatches(Sampler):
    """Episode indices of steps [start, stop): step t takes episodes [t*B, (t+1)*B); with R
    processes, rank r takes the r-th contiguous B/R of them."""

    def __init__(self, start: int, stop: int, batch_size: int, context: Context = Context()):
        if batch_size % context.world_size:
            raise ValueError(f"batch size {batch_size} must be a multiple of the number of "
                             f"processes ({context.world_size})")
        self.start, self.stop = start, stop
        self.per_rank = batch_size // context.world_size
        self.offset = context.rank * self.per_rank
        self.batch_size = batch_size

    def __iter__(self) -> Iterator[List[int]]:
        for step in range(self.start, self.stop):
            first = step * self.batch_size + self.offset
            yield list(range(first, first + self.per_rank))

    def __len__(self) -> int:
        return max(0, self.stop - self.start)


@contextmanager
def stop_requests() -> Iterator[Callable[[], bool]]:
    """While active, SIGINT and SIGTERM only raise a flag (checked between steps)."""
    requested = []
    handler = lambda signum, frame: requested.append(signum)  # noqa: E731
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield lambda: bool(requested)
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def step_loss(model: torch.nn.Module, out: Any, batch: Dict, align_weight: float) -> Loss:
    """The objective of one step: the model's own `loss` (a `Loss`, or a dict of named terms
    summed), else PANet's L_seg + align_weight * L_PAR with the model's `score`; without PAR (no
    `score`, or no PANetOutput), L_seg alone."""
    targets = (batch["query_labels"], batch["support_fg"], batch["support_bg"])
    head = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
    method_loss = own_loss(head)
    if method_loss is None:
        if isinstance(out, PANetOutput) and callable(getattr(head, "score", None)):
            return panet_loss(out, *targets, head.score, align_weight)
        logits = upsample(query_logits(out, head), targets[0].shape[-2:])  # L_seg alone
        seg = segmentation_loss(logits, targets[0])
        return Loss(seg, {"seg": seg}, pixel_means=("seg",))
    loss = method_loss(out, *targets)
    if isinstance(loss, Mapping) and loss and all(torch.is_tensor(v) for v in loss.values()):
        return Loss(sum(loss.values()), dict(loss))
    if not isinstance(loss, Loss):
        raise TypeError(f"the model's `loss` returned a {type(loss).__name__}: it returns a dict "
                        "of named scalar terms, or a panet.models.losses.Loss")
    return loss


def batch_values(loss: Loss, labelled: torch.Tensor, context: Context
                 ) -> Tuple[Dict[str, float], bool]:
    """The step's losses over the whole batch, on every process, and whether any is not finite:
    pixel-mean terms weighted by each process's `labelled` pixels, the others averaged."""
    names = list(loss.terms)
    weights = torch.stack([labelled if name in loss.pixel_means else torch.ones_like(labelled)
                           for name in names]).to(loss.total.dtype)
    values = torch.stack([loss.terms[name].detach() for name in names]) * weights
    rest = loss.total.detach() - sum(loss.terms[name].detach() for name in loss.pixel_means)
    sums = all_reduce_sum(torch.cat([values, weights, rest[None]]), context)
    n = len(names)
    terms = dict(zip(names, (sums[:n] / sums[n:2 * n].clamp(min=1)).tolist()))
    total = sums[-1].item() / context.world_size + sum(terms[name] for name in loss.pixel_means)
    reported = {"loss": total, **{f"{name}_loss": value for name, value in terms.items()}}
    return reported, not all(map(math.isfinite, reported.values()))


def train_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, batch: Dict,
               align_weight: float, context: Context = Context(),
               scaler: Optional[torch.amp.GradScaler] = None,
               grad_clip: float = 0.0) -> Dict[str, float]:
    """One optimizer step on a batch of episodes (`step_loss`); returns `batch_values`.

    Across processes PROTOCOL §4's batch semantics hold: DDP averages gradients, so each
    process's pixel-mean terms are rescaled by its share of the labelled pixels. Raises
    NonFiniteLossError before any update. `scaler` (fp16): `torch.amp.GradScaler`'s scaled step;
    `grad_clip` > 0: the gradients' global norm is clipped to it.
    """
    optimizer.zero_grad(set_to_none=True)
    loss = step_loss(model, model(*(batch[key] for key in MODEL_INPUTS)), batch, align_weight)
    labelled = (batch["query_labels"] != IGNORE_INDEX).sum()
    values, nonfinite = batch_values(loss, labelled, context)
    if nonfinite:
        shown = ", ".join(f"{name} {value}" for name, value in values.items())
        raise NonFiniteLossError(f"non-finite loss ({shown}) on episodes {batch['query_ids']}")
    objective = loss.total
    if context.distributed and loss.pixel_means:
        share = labelled * context.world_size / all_reduce_sum(labelled.clone(), context)
        objective = objective + sum(loss.terms[name] * (share - 1) for name in loss.pixel_means)
    (objective if scaler is None else scaler.scale(objective)).backward()
    if grad_clip:
        if scaler is not None:
            scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_([p for group in optimizer.param_groups
                                        for p in group["params"]], grad_clip)
    if scaler is None:
        optimizer.step()
    else:
        scaler.step(optimizer)
        scaler.update()
    return values


def train(model: torch.nn.Module, optimization: Optimization, loader: DataLoader, *,
          align_weight: float, grad_clip: float = 0.0,
          on_step: Callable[[int, Dict[str, float]], None],
          on_interrupt: Callable[[int], None], context: Context = Context()) -> int:
    """Run the steps of `loader` (a `StepBatches` loader) and return the number of steps done.
    After each step, `on_step(steps done, losses and lr)`. On SIGINT/SIGTERM the step is
    finished, `on_interrupt(step)` called (to save) and TrainingInterrupted raised, every
    process at the same step.
    """
    model.train()
    step = loader.batch_sampler.start
    with stop_requests() as stop_requested:
        for batch in loader:
            losses = train_step(model, optimization.optimizer, to_device(batch, context.device),
                                align_weight, context, optimization.scaler, grad_clip)
            lr = optimization.optimizer.param_groups[0]["lr"]
            optimization.scheduler.step()
            step += 1
            on_step(step, {**losses, "lr": lr})
            stop = torch.tensor(float(stop_requested()), device=context.device)
            if all_reduce_sum(stop, context).item():
                on_interrupt(step)
                raise TrainingInterrupted(f"stopped after step {step}")
    return step
