"""Train PANet (or the method of model.factory) on the training classes of one fold.

    python train.py with voc 1shot data.fold=0            # Table 1 row, one fold
    python train.py with voc 5shot noalign data.fold=2    # Table 5 ablation
    python train.py with train.resume=runs/7              # continue run 7 where it stopped
    torchrun --nproc_per_node=4 train.py with voc train.batch_size=4   # several GPUs

Everything a run writes goes to its run folder (panet/run/folder.py): runs/<id>/ or
train.output_dir. Checkpoints go to <run folder>/checkpoints/: last.pt (every
train.checkpoint_every steps and on Ctrl-C / SIGTERM), snapshot_<step>.pt (every
train.snapshot_every steps), final.pt. A resumed run takes its setting from the checkpoint and
continues in the run folder holding it (or train.output_dir). After the first step a line warns
if the run folder lacks the space its checkpoints will need; a save that does not fit stops the
run with one line saying how to continue it. `precision=bf16` (and
`memory_format=channels_last`) run the encoder faster where the hardware supports it
(docs/precision.md); the checkpoint's config records them and a resumed run keeps them.
"""

import sys
from typing import Optional, Tuple

import torch
from torch.nn.parallel import DistributedDataParallel

from panet import training
from panet.base import distributed
from panet.base.monitor import Progress, ScalarLog
from panet.data import make_episode_dataset
from panet.data.episodes import episode_loader
from panet.models.builder import build_model
from panet.models.factory import with_numerics
from panet.run.experiments import (STOPPED, announce_device, experiment, run_folder,
                                   script_main)
from panet.run.folder import Checkpointer, CheckpointRef
from panet.run.identity import method_change, training_identity
from panet.run.disk import opened_source
from panet.settings import Settings
from panet.training import NonFiniteLossError, Optimization, StepBatches, build_optimization
from panet.weights.checkpoint import load_checkpoint, restore_rng_states

ex = experiment("train")


def restore(checkpoint: CheckpointRef, net: torch.nn.Module, optimization: Optimization
            ) -> Tuple[int, Optional[str]]:
    """Continue from `checkpoint`: its weights, optimizer, learning-rate schedule, loss scaler
    and random states go into `net`, `optimization` and the generators. Returns its step and
    the identity of the data it trained on (None in checkpoints older than that)."""
    state = load_checkpoint(checkpoint.path)
    net.load_state_dict(state["model"])
    optimization.optimizer.load_state_dict(state["optimizer"])
    optimization.scheduler.load_state_dict(state["scheduler"])
    if optimization.scaler is not None and "scaler" in state:
        optimization.scaler.load_state_dict(state["scaler"])
    restore_rng_states(state["rng"])
    return state["step"], state.get("identity", {}).get("data", state.get("data_identity"))


@ex.main
def main(_run, _config):
    settings, resume = Settings.from_config(_config), ex.composition.checkpoint
    train = settings.train
    context = distributed.setup(settings.run.device, settings.run.tf32)
    try:
        announce_device(_run, context, settings.run.tf32)
        # resuming: the weights come from the checkpoint (no ImageNet file needed)
        model = settings.model.replace(weights=None) if resume else settings.model
        net = with_numerics(build_model(model).to(context.device), settings.run.numerics())
        optimization = build_optimization(net, train, context.device,
                                          settings.run.precision)
        start, trained_on = restore(resume, net, optimization) if resume else (0, None)
        dataset = make_episode_dataset(settings.data, train.steps * train.batch_size,
                                       settings.run.seed, train=True,
                                       source=opened_source(settings.data, train=True))
        identity = training_identity(_config, dataset.source.identity())
        if trained_on not in (None, identity["data"]) and context.is_main:
            print(f"warning: resuming on other data than {resume.path} was trained on (the "
                  f"per-class image lists of data.root={settings.data.root} differ from the "
                  "checkpoint's): the run goes on with other episodes", file=sys.stderr,
                  flush=True)
        folder = run_folder(_run, ex, context)
        if folder is None:
            raise ValueError("no run folder: set train.output_dir, or run train.py from the "
                             "command line, which records the run under runs/<id>")
        checkpointer = Checkpointer(folder, train, start, lambda step: dict(
            step=step, model=net, config=_config, identity=identity, **optimization._asdict()))
        if context.is_main:
            if resume:
                print(f"resuming {resume.path} at step {start} of {train.steps}")
                changed = method_change(resume.identity, settings.model.factory)
                if changed:
                    print(changed, file=sys.stderr, flush=True)
            print(f"run folder: {folder.path}", flush=True)
        loader = episode_loader(dataset, StepBatches(start, train.steps, train.batch_size,
                                                     context), settings.data.workers,
                                context.device)
        steps = run_steps(net, optimization, loader, settings, checkpointer, _run, context,
                          identity["loss_terms"])
        if context.is_main:
            final = checkpointer.save(steps, folder.final)
            print(f"trained {steps} steps: {final}")
            return str(final)
    finally:
        distributed.teardown(context)


def run_steps(net, optimization, loader, settings, checkpointer, run, context,
              loss_terms: list) -> int:
    """Train through `loader`'s steps (`panet.training.train`), showing progress and logging
    the losses on rank 0, which also saves the checkpoints; returns the steps done.
    `loss_terms` (empty) receives the names of the terms the first step reports."""
    train, start = settings.train, checkpointer.start
    ddp = net if not context.distributed else DistributedDataParallel(
        net, device_ids=[context.device.index] if context.device.type == "cuda" else None)
    scalars = (ScalarLog(run, checkpointer.folder.path, purge_step=start + 1 if start else None)
               if context.is_main else None)
    progress = Progress(train.steps, initial=start, desc="train step", every=train.log_every,
                        enabled=context.is_main)

    def on_step(step: int, values: dict) -> None:
        if not loss_terms:
            loss_terms.extend(key[:-len("_loss")] for key in values if key.endswith("_loss"))
        progress.update(values)
        if context.is_main:
            scalars.log(values, step)
            checkpointer.step(step)

    def on_interrupt(step: int) -> None:
        if context.is_main:
            run.info[STOPPED] = checkpointer.interrupted(step)  # also into cout.txt
            print(f"\n{run.info[STOPPED]}", flush=True)

    try:
        with progress:
            return training.train(ddp, optimization, loader, align_weight=train.align_weight,
                                  grad_clip=train.grad_clip, on_step=on_step,
                                  on_interrupt=on_interrupt, context=context)
    except NonFiniteLossError as error:
        raise NonFiniteLossError(f"{error}. Training stopped without applying that update; "
                                 f"{checkpointer.last_good()}") from None
    finally:
        if scalars is not None:
            scalars.close()


if __name__ == "__main__":
    script_main(ex)
