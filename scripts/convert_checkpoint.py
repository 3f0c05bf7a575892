"""Convert between our checkpoints and the authors' released PANet snapshots; upgrade old ones.

    python scripts/convert_checkpoint.py --to released CHECKPOINT OUT.pth
    python scripts/convert_checkpoint.py --to panet SNAPSHOT.pth OUT.pt [--dataset voc|coco]
        [--fold F] [--ways W] [--shots S] [--align | --no-align] [--step N]
    python scripts/convert_checkpoint.py --upgrade --trust-pickle OLD.pt NEW.pt

--to released: the 26 encoder tensors of a VGG-16 PANet, named and ordered as
`nn.DataParallel(FewShotSeg).state_dict()`, in the legacy torch format PyTorch 1.0 reads; prints
the run folder to put it under (the released test.py reads the setting from the path).

--to panet: a train.py checkpoint of a released snapshot, with the config train.py composes for
the snapshot's setting (from its path, each part overridable by an option), the step of
`<step>.pth` or --step, and a fresh optimizer (the release kept none) with the learning-rate
schedule advanced to the step; `origin` records the snapshot, its SHA-256 and each setting's
source.

--upgrade: a format-1 checkpoint (numpy's generator state and sacred's config objects pickled)
rewritten with tensors and plain data only; reading it unpickles it, which runs any code a
crafted file holds: it needs --trust-pickle.

Errors are one line on stderr, with exit status 1 (2 for bad arguments).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import torch

from panet.weights.checkpoint import FORMAT_VERSION, load_checkpoint, rng_data, save_checkpoint
from panet.training import build_optimization
from panet.base.files import atomic_write
from panet.run.compose import compose, flatten
from panet.weights.model_files import ModelFile, build_trained, read_model_file
from panet.models.factory import DEFAULT_FACTORY
from panet.weights.released import (RELEASED_PATH_FORM, ReleasedSetting, panet_to_released,
                            setting_of_config)
from panet.base.safe_load import plain_data
from panet.settings import TrainSettings
from panet.base.errors import OneLineParser, one_line

# what the released code's model is: (model.* key, its value there, why no other converts)
RELEASED_MODEL = (("encoder", "vgg16", "the released code has only the VGG-16 encoder"),
                  ("factory", DEFAULT_FACTORY, "the released code has PANet only"),
                  ("alpha", 20.0, "the released code fixes the cosine scale (`scaler`) at 20"))


def to_released(model_file: ModelFile, out: Path) -> str:
    """Write `model_file` (a panet checkpoint of a VGG-16 PANet) as a released snapshot."""
    if model_file.format != "panet":
        raise ValueError(f"'{model_file.path}' is already a released snapshot")
    model = {"factory": DEFAULT_FACTORY, **model_file.config["model"]}
    for key, released, why in RELEASED_MODEL:
        if model[key] != released:
            raise ValueError(f"'{model_file.path}' has model.{key}={model[key]!r}: {why}")
    state = panet_to_released(model_file.state, model_file.path)
    with atomic_write(out) as file:
        torch.save(state, file, _use_new_zipfile_serialization=False)
    setting = setting_of_config(model_file.config)
    where = ("the released code has no name for this setting (dataset, input size or PAR "
             "weight)" if setting is None else "for the released test.py, put it at "
             f".../{setting.run_name()}/1/snapshots/{model_file.step}.pth")
    return f"wrote {out}: {len(state)} tensors in the released layout; {where}"


def released_setting(model_file: ModelFile, args: argparse.Namespace
                     ) -> Tuple[ReleasedSetting, Dict[str, str]]:
    """The setting of a released snapshot (path, each part overridden by its option) and where
    each part came from ("path" | "option"); ValueError naming the options still needed."""
    given = {field: getattr(args, field) for field in ReleasedSetting._fields
             if getattr(args, field) is not None}
    values = {**(model_file.path_setting._asdict() if model_file.path_setting else {}), **given}
    sources = {field: "option" if field in given else "path" for field in values}
    missing = [f"--{field}" + (" or --no-align" if field == "align" else "")
               for field in ReleasedSetting._fields if field not in values]
    if missing:
        raise ValueError(f"'{model_file.path}' names no setting in its path (released form: "
                         f"{RELEASED_PATH_FORM}): give {', '.join(missing)}")
    return ReleasedSetting(**values), sources


def training_config(setting: ReleasedSetting) -> Dict[str, Any]:
    """The config `python train.py with <setting's named configs and values>` would run with."""
    return compose("train", setting.named_configs(), flatten(setting.config_updates())).config


def to_panet(model_file: ModelFile, out: Path, args: argparse.Namespace) -> str:
    """Write a released snapshot as a train.py checkpoint (see the module docstring)."""
    if model_file.format != "released":
        raise ValueError(f"'{model_file.path}' is already a panet checkpoint")
    setting, sources = released_setting(model_file, args)
    step = args.step if args.step is not None else model_file.step
    if step is None:
        raise ValueError(f"'{model_file.path}' is not named <step>.pth: give --step")
    config = training_config(setting)
    net = build_trained(model_file)
    optimization = build_optimization(net, TrainSettings.from_config(config["train"]))
    with warnings.catch_warnings():  # stepping the schedule without optimizer steps is the aim
        warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step")
        for _ in range(step):
            optimization.scheduler.step()
    origin = {"format": "released", "file": str(model_file.path), "sha256": model_file.sha256,
              "setting_from": sources, "step_from": "option" if args.step is not None else "path"}
    save_checkpoint(out, step=step, model=net, config=config, origin=origin,
                    **optimization._asdict())
    return (f"wrote {out}: a panet checkpoint at step {step}, {' '.join(setting.named_configs())} "
            f"fold {setting.fold}, {setting.ways}-way {setting.shots}-shot")


def upgrade(path: Path, out: Path, trust_pickle: bool) -> str:
    """Rewrite a format-1 checkpoint in the current format (module docstring)."""
    if not trust_pickle:
        raise ValueError(f"reading the format-1 checkpoint '{path}' unpickles it, which runs any "
                         "code a crafted file holds: pass --trust-pickle if you trust its source")
    if not path.is_file():
        raise ValueError(f"'{path}' does not exist")
    old = torch.load(path, map_location="cpu", weights_only=False)  # trusted by the user
    if not isinstance(old, dict) or old.get("format_version") != 1:
        found = old.get("format_version") if isinstance(old, dict) else type(old).__name__
        raise ValueError(f"'{path}' is not a panet checkpoint of format 1 (found {found!r})")
    rng = old["rng"]
    state = {**old, "format_version": FORMAT_VERSION, "config": plain_data(old["config"]),
             "rng": rng_data(rng["python"], rng["numpy"], rng["torch"], rng["cuda"])}
    with atomic_write(out) as file:
        torch.save(state, file)
    load_checkpoint(out)  # proof that it now reads as data only
    return f"wrote {out}: format {FORMAT_VERSION}, step {state['step']}"


def main(argv: Optional[list] = None) -> int:
    parser = OneLineParser(prog=Path(__file__).name, description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--to", choices=("released", "panet"), help="the format to write")
    mode.add_argument("--upgrade", action="store_true",
                      help="rewrite a format-1 checkpoint in the current format")
    parser.add_argument("source", type=Path, help="the file to convert")
    parser.add_argument("out", type=Path, help="the file to write")
    parser.add_argument("--trust-pickle", action="store_true",
                        help="--upgrade: unpickle the old file (runs any code it holds)")
    setting = parser.add_argument_group("--to panet: the setting, when the path gives none")
    setting.add_argument("--dataset", choices=("voc", "coco"))
    setting.add_argument("--fold", type=int)
    setting.add_argument("--ways", type=int)
    setting.add_argument("--shots", type=int)
    setting.add_argument("--align", action=argparse.BooleanOptionalAction,
                         help="trained with PAR (--no-align: without)")
    setting.add_argument("--step", type=int, help="the snapshot's training step")
    args = parser.parse_args(argv)
    given = [f"--{name}" for name in (*ReleasedSetting._fields, "step")
             if getattr(args, name) is not None]
    if given and args.to != "panet":
        parser.error(f"{', '.join(given)} belong to --to panet")
    if args.out.resolve() == args.source.resolve():
        parser.error("OUT must differ from the source file")
    try:
        if args.upgrade:
            print(upgrade(args.source, args.out, args.trust_pickle))
        elif args.to == "released":
            print(to_released(read_model_file(args.source), args.out))
        else:
            print(to_panet(read_model_file(args.source), args.out, args))
    except (ValueError, OSError) as error:
        print(f"{parser.prog}: error: {one_line(error)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
