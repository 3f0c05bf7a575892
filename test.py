"""Evaluate PANet on the test classes of a fold: runs x episodes, mean-IoU and binary-IoU.

    python test.py with test.checkpoint=runs/1                           # the setting it trained on
    python test.py with test.checkpoint=runs/1 5shot                     # override: 5-shot episodes
    python test.py with test.checkpoint=runs/1 bbox                      # Table 6: box supports
    python test.py with test.checkpoint=runs/1 val test.rule=corrected   # VOC val, corrected metric
    python test.py with voc notrain data.fold=0                          # PANet-init (no training)
    torchrun --nproc_per_node=4 test.py with test.checkpoint=runs/1      # images sharded
    python test.py with test.checkpoint=runs/1 test.encode=episode       # per-episode reference

test.checkpoint is a checkpoint file or a run folder (then its checkpoints/final.pt, or last.pt
when that one has more steps). The episode setting (dataset, fold, ways, shots, ...) is read
from the config stored in the checkpoint; any data.* key given on the command line (directly or
through a named config) overrides it. Results go to <run folder>/results.json (with 95%
bootstrap intervals of mean- and binary-IoU over episodes, test.bootstrap resamples) and the
per-query counts of every episode to <run folder>/episodes.npz (scripts/compare.py compares two
tests of the same episodes); the run folder is runs/<id>/ or test.output_dir.
"""

import warnings

from panet import distributed
from panet.checkpoint import find_checkpoint, load_checkpoint
from panet.config import (PanetExperiment, build_dataset, build_model, build_source,
                          trained_model)
from panet.data.folds import split_classes
from panet.evaluation import evaluate_runs
from panet.metrics import IoUMeter
from panet.monitor import ScalarLog
from panet.results import describe_setting, format_table, write_json
from panet.runs import announce_device, run_from_command_line, shared_run_dir
from panet.statistics import (RECORDS_FILE, bootstrap_intervals, bootstrap_seed,
                              records_of_test)
from panet.validation import ConfigError, data_root_problems

ex = PanetExperiment("panet_test", script="test")
EVALUATION_KEYS = ("encode", "batch_size", "resolution", "cache_gb", "cache_dir")


def test_setting(run, config):
    """(data config, model config, checkpoint state or None) of this evaluation."""
    if config["test"]["notrain"]:
        return config["data"], config["model"], None
    path = find_checkpoint(config["test"]["checkpoint"])
    if str(path) != config["test"]["checkpoint"]:
        print(f"test.checkpoint={config['test']['checkpoint']} is a run folder: testing {path}")
    state = load_checkpoint(path)
    state["path"] = str(path)
    stored = state["config"]
    overrides = {key.split(".", 1)[1]: config["data"][key.split(".", 1)[1]]
                 for key in run.config_modifications.modified if key.startswith("data.")}
    model = {**stored["model"], "weights": None}  # the weights come from the checkpoint
    # keys newer than the checkpoint take their defaults
    return {**config["data"], **stored["data"], **overrides}, model, state


def data_classes(source, data, train):
    """The training or test classes of a data config (`split_classes`) on `source`."""
    return split_classes(source, train, data["fold"], n_folds=data["n_folds"],
                         fold_style=data["fold_style"], test_classes=data["test_classes"])


def seen_in_training(source, data, stored):
    """The test classes of `data` that the checkpoint's training run (its `stored` data config)
    trained on: non-empty when a fold or class override tests classes the model has seen."""
    if stored["name"] != data["name"]:
        return []  # another dataset: its class ids mean other classes
    return sorted(set(data_classes(source, stored, True)) & set(data_classes(source, data, False)))


@ex.main
def main(_run, test, seed, device, tf32):
    context = distributed.setup(device, tf32)
    try:
        computed_on = announce_device(_run, context, tf32)
        data, model, state = test_setting(_run, _run.config)
        if data_root_problems(data):  # the checkpoint's data.root, unless overridden
            raise ConfigError(data_root_problems(data))
        net = (build_model(model) if state is None else trained_model(state)).to(context.device)
        directory = shared_run_dir(_run, "test", context)
        source = build_source(data, train=False)  # read once, shared by the runs
        datasets = [build_dataset(data, train=False, n_episodes=test["episodes"], seed=seed + run,
                                  keep_original_labels=test["resolution"] == "original",
                                  source=source)
                    for run in range(test["runs"])]
        classes = data_classes(source, data, train=False)
        stored = None if state is None else {**data, **state["config"]["data"]}
        seen = [] if state is None else seen_in_training(source, data, stored)
        if seen and context.is_main:
            warnings.warn(f"testing on classes the checkpoint trained on: "
                          f"{', '.join(source.class_name(c) for c in seen)} (trained: "
                          f"{describe_setting(stored)}; tested: {describe_setting(data)}); these "
                          "numbers are not few-shot results",
                          stacklevel=1)
        meter = evaluate_runs(net, datasets, IoUMeter(classes, n_runs=test["runs"],
                                                      rule=test["rule"], keep_records=True),
                              **{key: test[key] for key in EVALUATION_KEYS},
                              workers=data["workers"], context=context, progress=context.is_main)
        if not context.is_main:
            return None
        summary = meter.summary()
        records = records_of_test(meter.records, [dataset.episodes for dataset in datasets])
        if test["bootstrap"]:
            summary.update(bootstrap_intervals(records, classes, test["bootstrap"],
                                               seed=bootstrap_seed(data["fold"])))
        title = (f"{describe_setting(data)}; {test['runs']} runs x {test['episodes']} episodes, "
                 f"metric rule {test['rule']}, {test['resolution']} resolution")
        print(format_table(summary, source.class_name, title))
        trained_steps = None if state is None else state["step"]
        record = {
            **summary,
            "test_classes_seen_in_training": bool(seen),
            "device": {**computed_on, "processes": context.world_size},
            "bootstrap": {"resamples": test["bootstrap"], "seed": bootstrap_seed(data["fold"]),
                          "over": "the test episodes, given the trained model"},
            "setting": {"data": data, "model": model, "seed": seed,
                        **{k: test[k] for k in ("runs", "episodes", "rule", "resolution", "notrain",
                                                "encode")},
                        "checkpoint": None if state is None else state["path"],
                        "trained_steps": trained_steps},
        }
        if directory is not None:
            scalars = ScalarLog(_run, directory)
            scalars.log({k: summary[k] for k in ("mean_iou", "binary_iou")}, trained_steps or 0,
                        prefix="test/")
            scalars.close()
            records.save(directory / RECORDS_FILE)
            print(f"results: {write_json(directory / 'results.json', record)} (per-episode "
                  f"counts: {directory / RECORDS_FILE})")
        return {key: summary[key] for key in ("mean_iou", "mean_iou_std", "binary_iou",
                                              "binary_iou_std")}
    finally:
        distributed.teardown(context)


if __name__ == "__main__":
    run_from_command_line(ex)
