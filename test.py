"""Evaluate PANet on the test classes of a fold: runs x episodes, mean-IoU and binary-IoU.

    python test.py with test.checkpoint=runs/1                           # the setting it trained on
    python test.py with test.checkpoint=runs/1 5shot                     # override: 5-shot episodes
    python test.py with test.checkpoint=runs/1 bbox                      # Table 6: box supports
    python test.py with test.checkpoint=runs/1 val test.rule=corrected   # VOC val, corrected metric
    python test.py with voc notrain data.fold=0                          # PANet-init (no training)
    torchrun --nproc_per_node=4 test.py with test.checkpoint=runs/1      # images sharded
    python test.py with test.checkpoint=runs/1 test.encode=episode       # per-episode reference

test.checkpoint is a checkpoint file, a run folder (then its checkpoints/final.pt, or last.pt
when that one has more steps) or a snapshot of the authors' released code. The episode setting
(dataset, fold, ways, shots, ...) is the checkpoint's (a released snapshot's: the one its path
names); every data.* value given on the command line, directly or through a named config,
overrides it (panet/config.py), and one that changes the protocol (dataset, size, fold,
classes) is printed. Results go to <run folder>/results.json (with 95%
bootstrap intervals of mean- and binary-IoU over episodes, test.bootstrap resamples) and the
per-query counts of every episode to <run folder>/episodes.npz (scripts/compare.py compares two
tests of the same episodes); the run folder is runs/<id>/ or test.output_dir. `precision` and
`memory_format` (default fp32, contiguous; docs/precision.md) apply to both evaluation paths and
are recorded in results.json's "setting"; a checkpoint trained in another precision than the
test's is said in one line.
"""

import sys
import warnings

from panet.base import distributed
from panet.run.experiments import PanetExperiment
from panet.data import make_episode_dataset, make_source
from panet.data.folds import split_classes
from panet.evaluation.images import encode_path, evaluate_runs
from panet.evaluation.metrics import IoUMeter
from panet.weights.model_files import build_panet, read_model_file
from panet.models.builder import build_model
from panet.base.monitor import ScalarLog
from panet.report.results import code_version, describe_setting, format_table, write_json
from panet.run.folder import RESULTS_FILE, announce_device, script_main, shared_run_dir
from panet.base.safe_load import plain_data
from panet.settings import EpisodeSetting, Settings, fingerprint
from panet.report.statistics import (RECORDS_FILE, bootstrap_intervals, bootstrap_seed,
                              records_of_test)
from panet.run.validation import precision_override, protocol_overrides

ex = PanetExperiment("panet_test", script="test")


def data_classes(source, data: EpisodeSetting, train: bool):
    """The training or test classes of an episode setting (`split_classes`) on `source`."""
    return split_classes(source, train, data.fold, n_folds=data.n_folds,
                         fold_style=data.fold_style, test_classes=data.test_classes)


def trained_setting(data: EpisodeSetting):
    """The episode setting the checkpoint of this test was trained with (None: PANet-init, or a
    released snapshot whose path names none)."""
    checkpoint = ex.request.checkpoint
    if checkpoint is None:
        return None
    if checkpoint.format == "panet":
        return EpisodeSetting.from_config(checkpoint.config["data"])
    named = checkpoint.path_setting
    if named is None:
        return None
    return data.replace(name="pascal" if named.dataset == "voc" else "coco", fold=named.fold,
                        n_folds=4, fold_style="contiguous", test_classes=None)


def seen_in_training(source, data: EpisodeSetting, trained):
    """The test classes of `data` that the checkpoint's training run (its setting `trained`)
    trained on: non-empty when a fold or class override tests classes the model has seen."""
    if trained is None or trained.name != data.name:
        return []  # another dataset: its class ids mean other classes
    return sorted(set(data_classes(source, trained, True)) & set(data_classes(source, data, False)))


def checkpoint_record(request, model_file) -> dict:
    """What results.json says of the evaluated weights (with the training seed and what
    determined the training of a train.py checkpoint: `panet.settings.fingerprint`) and where
    the setting came from."""
    keys = [key for key in request.base] + [key for key in request.given
                                            if key.startswith(("data.", "model."))]
    trained = None if model_file is None else model_file.config  # None: released, PANet-init
    return {"checkpoint": None if model_file is None else str(model_file.path),
            "checkpoint_format": None if model_file is None else model_file.format,
            "checkpoint_sha256": None if model_file is None else model_file.sha256,
            "trained_steps": None if model_file is None else model_file.step,
            "training_seed": None if trained is None else trained.get("seed"),
            "training": None if trained is None else fingerprint(trained, "train"),
            "sources": {key: request.source(key) for key in sorted(set(keys))}}


@ex.main
def main(_run, _config):
    settings = Settings.from_config(_config)
    data, test, request = settings.data, settings.test, ex.request
    context = distributed.setup(settings.run.device, settings.run.tf32)
    try:
        computed_on = announce_device(_run, context, settings.run.tf32)
        model_file = None if test.notrain else read_model_file(request.checkpoint.path)
        if model_file is not None and str(model_file.path) != test.checkpoint and context.is_main:
            print(f"test.checkpoint={test.checkpoint} is a run folder: testing {model_file.path}")
        changed = protocol_overrides(settings, request)
        if changed and context.is_main:
            print(changed, flush=True)
        mixed = precision_override(settings, request)
        if mixed and context.is_main:
            print(mixed, file=sys.stderr, flush=True)
        net = (build_model(settings.model) if model_file is None
               else build_panet(model_file)).to(context.device)
        net.use_numerics(settings.run.numerics())
        directory = shared_run_dir(_run, ex, context)
        source = make_source(data, train=False)  # read once, shared by the runs
        datasets = [make_episode_dataset(data, test.episodes, settings.run.seed + run,
                                         train=False, source=source,
                                         keep_original_labels=test.resolution == "original")
                    for run in range(test.runs)]
        classes = data_classes(source, data, train=False)
        trained = trained_setting(data)
        seen = seen_in_training(source, data, trained)
        if seen and context.is_main:
            warnings.warn(f"testing on classes the checkpoint trained on: "
                          f"{', '.join(source.class_name(c) for c in seen)} (trained: "
                          f"{describe_setting(trained)}; tested: {describe_setting(data)}); "
                          "these numbers are not few-shot results", stacklevel=1)
        encoded, why = encode_path(net, test.encode)
        if why is not None and context.is_main:
            print(f"test.encode={test.encode}: {why}, so its prototypes may not come from "
                  "supports pooled once: evaluated per episode (as test.encode=episode)",
                  flush=True)
        meter = evaluate_runs(net, datasets, IoUMeter(classes, n_runs=test.runs, rule=test.rule,
                                                      keep_records=True),
                              test.eval_options(data.workers), context, progress=context.is_main)
        if not context.is_main:
            return None
        summary = meter.summary()
        records = records_of_test(meter.records, [dataset.episodes for dataset in datasets])
        if test.bootstrap:
            summary.update(bootstrap_intervals(records, classes, test.bootstrap,
                                               seed=bootstrap_seed(data.fold)))
        title = (f"{describe_setting(data)}; {test.runs} runs x {test.episodes} episodes, "
                 f"metric rule {test.rule}, {test.resolution} resolution")
        print(format_table(summary, source.class_name, title))
        record = {
            **summary,
            "test_classes_seen_in_training": bool(seen),
            "device": {**computed_on, "processes": context.world_size},
            "bootstrap": {"resamples": test.bootstrap, "seed": bootstrap_seed(data.fold),
                          "over": "the test episodes, given the trained model"},
            "config": plain_data(_config, "config"),  # every setting, as read (reproduce.py)
            "code": code_version(),
            "setting": {"data": {**data.as_config(), "train_split": data.split(True),
                                 "test_split": data.split(False)},
                        "model": settings.model.as_config(), "seed": settings.run.seed,
                        "precision": settings.run.precision,
                        "memory_format": settings.run.memory_format,
                        **{k: getattr(test, k) for k in ("runs", "episodes", "rule",
                                                         "resolution", "notrain", "encode")},
                        "encode_used": encoded, "encode_why": why,
                        **checkpoint_record(request, model_file)},
        }
        if directory is not None:
            scalars = ScalarLog(_run, directory)
            scalars.log({k: summary[k] for k in ("mean_iou", "binary_iou")},
                        record["setting"]["trained_steps"] or 0, prefix="test/")
            scalars.close()
            records.save(directory / RECORDS_FILE)
            print(f"results: {write_json(directory / RESULTS_FILE, record)} (per-episode "
                  f"counts: {directory / RECORDS_FILE})")
        return {key: summary[key] for key in ("mean_iou", "mean_iou_std", "binary_iou",
                                              "binary_iou_std")}
    finally:
        distributed.teardown(context)


if __name__ == "__main__":
    script_main(ex)
