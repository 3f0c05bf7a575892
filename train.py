"""Train PANet on the training classes of one fold.

    python train.py with voc 1shot data.fold=0            # Table 1 row, one fold
    python train.py with voc 5shot noalign data.fold=2    # Table 5 ablation
    python train.py with train.resume=runs/7/checkpoints/last.pt   # continue a run
    torchrun --nproc_per_node=4 train.py with voc train.batch_size=4   # several GPUs

Checkpoints go to <run dir>/checkpoints/: last.pt (every train.checkpoint_every steps and on
Ctrl-C / SIGTERM), snapshot_<step>.pt (every train.snapshot_every steps), final.pt.
"""

from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel

from panet import distributed, engine
from panet.checkpoint import load_checkpoint, restore_rng_states, save_checkpoint
from panet.config import (build_dataset, build_model, build_optimizer, make_experiment,
                          run_directory, run_from_command_line)
from panet.engine import NonFiniteLossError, StepBatches, episode_loader

ex = make_experiment("panet_train")

# keys that may differ between a checkpoint and the run resuming it
RESUMABLE_CHANGES = {("data", "root"), ("data", "workers"), ("data", "cache_dir"),
                     ("train", "steps"), ("train", "resume"), ("train", "output_dir"),
                     ("train", "checkpoint_every"), ("train", "snapshot_every")}


def check_resumable(stored: dict, config: dict) -> None:
    """Refuse to continue a checkpoint under a different setting (data, model or schedule)."""
    differences = [f"{section}.{key}: {stored[section].get(key)!r} -> {value!r}"
                   for section in ("data", "model", "train")
                   for key, value in config[section].items()
                   if (section, key) not in RESUMABLE_CHANGES and stored[section].get(key) != value]
    if config["seed"] != stored["seed"]:
        differences.append(f"seed: {stored['seed']} -> {config['seed']}")
    if differences:
        raise ValueError("the checkpoint was trained with another setting; resuming would mix "
                         "two runs: " + "; ".join(differences))


@ex.main
def main(_run, _config, data, model, train: dict, seed, device):
    if data["weak"] != "dense":
        raise ValueError(f"data.weak={data['weak']!r}: weak supports are a test-time setting "
                         "(Table 6); PANet trains on dense masks")
    context = distributed.setup(device)
    try:
        net = build_model(model).to(context.device)
        optimizer = build_optimizer(net.parameters(), train)
        scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, train["milestones"],
                                                         train["gamma"])
        start = 0
        if train["resume"]:
            state = load_checkpoint(train["resume"])
            check_resumable(state["config"], _config)
            net.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            restore_rng_states(state["rng"])
            start = state["step"]
            print(f"resuming {train['resume']} at step {start}")

        dataset = build_dataset(data, train=True, n_episodes=train["steps"] * train["batch_size"],
                                seed=seed)
        batches = StepBatches(start, train["steps"], train["batch_size"], context)
        loader = episode_loader(dataset, batches, data["workers"], context.device)
        ddp = net
        if context.distributed:
            ddp = DistributedDataParallel(
                net, device_ids=[context.device.index] if context.device.type == "cuda" else None)
        directory = run_directory(_run, train["output_dir"])
        if directory is None:
            raise ValueError("no output directory: set train.output_dir, or run train.py from the "
                             "command line, which records the run under runs/<id>")
        checkpoints = directory / "checkpoints"

        def save(step: int, name: str) -> Path:
            return save_checkpoint(checkpoints / name, step=step, model=net, optimizer=optimizer,
                                   scheduler=scheduler, config=_config)

        def on_step(step: int, losses: dict) -> None:
            if not context.is_main:
                return
            for name, value in losses.items():
                _run.log_scalar(name, value, step)
            if train["checkpoint_every"] and step % train["checkpoint_every"] == 0:
                save(step, "last.pt")
            if train["snapshot_every"] and step % train["snapshot_every"] == 0:
                save(step, f"snapshot_{step:06d}.pt")

        def on_interrupt(step: int) -> None:
            if context.is_main:
                print(f"interrupted: saved {save(step, 'last.pt')}; continue with "
                      f"`with train.resume={checkpoints / 'last.pt'}`")

        try:
            steps = engine.train(ddp, optimizer, scheduler, loader, start_step=start,
                                 align_weight=train["align_weight"], on_step=on_step,
                                 on_interrupt=on_interrupt, context=context,
                                 progress=context.is_main)
        except NonFiniteLossError as error:
            raise NonFiniteLossError(f"{error}. Training stopped without applying that update; "
                                     f"the last good checkpoint is kept in {checkpoints}") from None
        if context.is_main:
            final = save(steps, "final.pt")
            print(f"trained {steps} steps: {final}")
            return str(final)
    finally:
        distributed.teardown(context)


if __name__ == "__main__":
    run_from_command_line(ex, is_main=distributed.is_main_process())
