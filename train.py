"""Train PANet on the training classes of one fold.

    python train.py with voc 1shot data.fold=0            # Table 1 row, one fold
    python train.py with voc 5shot noalign data.fold=2    # Table 5 ablation
    python train.py with train.resume=runs/7              # continue run 7 where it stopped
    torchrun --nproc_per_node=4 train.py with voc train.batch_size=4   # several GPUs

Everything a run writes goes to its run folder (panet/runs.py): runs/<id>/ or train.output_dir.
Checkpoints go to <run folder>/checkpoints/: last.pt (every train.checkpoint_every steps and on
Ctrl-C / SIGTERM), snapshot_<step>.pt (every train.snapshot_every steps), final.pt. A resumed
run takes its whole setting from the checkpoint and continues in the same run folder. After the
first step a line warns if the run folder lacks the space its checkpoints will need; a save
that does not fit stops the run with one line saying how to continue it. `precision=bf16`
(and `memory_format=channels_last`) run the encoder faster where the hardware supports it
(docs/precision.md); the checkpoint's config records them and a resumed run keeps them.
"""

import shlex
import sys
from pathlib import Path
from typing import Optional, Tuple

import torch
from torch.nn.parallel import DistributedDataParallel

from panet import training
from panet.base import distributed
from panet.weights.checkpoint import (checkpoint_contents, load_checkpoint, restore_rng_states,
                              save_checkpoint)
from panet.run.experiments import PanetExperiment
from panet.data import make_episode_dataset
from panet.base.diskspace import checkpoints_to_write, serialized_size, space_warning
from panet.data.episodes import episode_loader
from panet.training import (NonFiniteLossError, Optimization, StepBatches, build_optimization)
from panet.models.builder import build_model
from panet.base.monitor import Progress, ScalarLog
from panet.run.folder import announce_device, script_main, shared_run_dir
from panet.settings import Settings

ex = PanetExperiment("panet_train", script="train")


def resume_command(checkpoint: Path) -> str:
    return f"python train.py with train.resume={shlex.quote(str(checkpoint))}"


def restore(path: Path, net: torch.nn.Module, optimization: Optimization
            ) -> Tuple[int, Optional[str]]:
    """Continue from the checkpoint at `path`: its weights, optimizer, learning-rate schedule,
    loss scaler and random states go into `net`, `optimization` and the generators. Returns its
    step and the identity of the data it trained on (None in checkpoints older than that)."""
    state = load_checkpoint(path)
    net.load_state_dict(state["model"])
    optimization.optimizer.load_state_dict(state["optimizer"])
    optimization.scheduler.load_state_dict(state["scheduler"])
    if optimization.scaler is not None and "scaler" in state:
        optimization.scaler.load_state_dict(state["scaler"])
    restore_rng_states(state["rng"])
    return state["step"], state.get("data_identity")


@ex.main
def main(_run, _config):
    settings = Settings.from_config(_config)
    train, resume = settings.train, ex.request.checkpoint
    context = distributed.setup(settings.run.device, settings.run.tf32)
    try:
        announce_device(_run, context, settings.run.tf32)
        # resuming: the weights come from the checkpoint (no ImageNet file needed)
        model = settings.model.replace(weights=None) if resume else settings.model
        net = build_model(model).to(context.device).use_numerics(settings.run.numerics())
        optimization = build_optimization(net.parameters(), train, context.device,
                                          settings.run.precision)
        start, trained_on = restore(resume.path, net, optimization) if resume else (0, None)
        dataset = make_episode_dataset(settings.data, train.steps * train.batch_size,
                                       settings.run.seed, train=True)
        data_identity = dataset.source.identity()
        if trained_on not in (None, data_identity) and context.is_main:
            print(f"warning: resuming on other data than {resume.path} was trained on (the "
                  f"per-class image lists of data.root={settings.data.root} differ from the "
                  "checkpoint's): the run goes on with other episodes", file=sys.stderr,
                  flush=True)
        batches = StepBatches(start, train.steps, train.batch_size, context)
        loader = episode_loader(dataset, batches, settings.data.workers, context.device)
        ddp = net
        if context.distributed:
            ddp = DistributedDataParallel(
                net, device_ids=[context.device.index] if context.device.type == "cuda" else None)
        directory = shared_run_dir(_run, ex, context)
        if directory is None:
            raise ValueError("no run folder: set train.output_dir, or run train.py from the "
                             "command line, which records the run under runs/<id>")
        checkpoints = directory / "checkpoints"
        if context.is_main:
            if resume:
                print(f"resuming {resume.path} at step {start} of {train.steps}")
            print(f"run folder: {directory}", flush=True)

        def contents(step: int) -> dict:
            """What a checkpoint of this run holds at `step` (`checkpoint_contents`' keywords)."""
            return dict(step=step, model=net, config=_config, data_identity=data_identity,
                        **optimization._asdict())

        def save(step: int, name: str) -> Path:
            return save_checkpoint(checkpoints / name, **contents(step))

        scalars = ScalarLog(_run, directory, purge_step=start + 1 if resume else None) \
            if context.is_main else None
        progress = Progress(train.steps, initial=start, desc="train step",
                            every=train.log_every, enabled=context.is_main)

        def warn_if_short_of_space(step: int) -> None:
            size = serialized_size(checkpoint_contents(**contents(step)))
            count = checkpoints_to_write(start, train.steps, train.checkpoint_every,
                                         train.snapshot_every, checkpoints)
            warning = space_warning(checkpoints, size, count)
            if warning:
                print(warning, flush=True)

        def on_step(step: int, values: dict) -> None:
            progress.update(values)
            if not context.is_main:
                return
            if step == start + 1:  # the optimizer has its state: a checkpoint's size is exact
                warn_if_short_of_space(step)
            scalars.log(values, step)
            if train.checkpoint_every and step % train.checkpoint_every == 0:
                save(step, "last.pt")
            if train.snapshot_every and step % train.snapshot_every == 0:
                save(step, f"snapshot_{step:06d}.pt")

        def on_interrupt(step: int) -> None:
            if context.is_main:
                print(f"\ninterrupted: saved {save(step, 'last.pt')}; continue with\n  "
                      f"{resume_command(checkpoints / 'last.pt')}", flush=True)

        try:
            with progress:
                steps = training.train(ddp, optimization, loader, align_weight=train.align_weight,
                                     on_step=on_step, on_interrupt=on_interrupt, context=context)
        except NonFiniteLossError as error:
            last = checkpoints / "last.pt"
            kept = (f"the last good checkpoint is {last}" if last.is_file()
                    else "no checkpoint had been saved yet")
            raise NonFiniteLossError(f"{error}. Training stopped without applying that update; "
                                     f"{kept}") from None
        finally:
            if scalars is not None:
                scalars.close()
        if context.is_main:
            final = save(steps, "final.pt")
            print(f"trained {steps} steps: {final}")
            return str(final)
    finally:
        distributed.teardown(context)


if __name__ == "__main__":
    script_main(ex)
