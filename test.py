"""Evaluate PANet on the test classes of a fold: runs x episodes, mean-IoU and binary-IoU.

    python test.py with test.checkpoint=runs/1/checkpoints/final.pt      # the setting it trained on
    python test.py with test.checkpoint=... 5shot                        # override: 5-shot episodes
    python test.py with test.checkpoint=... bbox                         # Table 6: box supports
    python test.py with test.checkpoint=... val test.rule=corrected      # VOC val, corrected metric
    python test.py with voc notrain data.fold=0                          # PANet-init (no training)
    torchrun --nproc_per_node=4 test.py with test.checkpoint=...         # images sharded
    python test.py with test.checkpoint=... test.encode=episode          # per-episode reference

The episode setting (dataset, fold, ways, shots, ...) is read from the config stored in the
checkpoint; any data.* key given on the command line (directly or through a named config)
overrides it. Results go to <run dir>/results.json (or test.output_dir).
"""

import itertools

from panet import distributed
from panet.checkpoint import load_checkpoint
from panet.config import (build_dataset, build_model, make_experiment, run_directory,
                          run_from_command_line, trained_model)
from panet.data import fold_classes
from panet.evaluation import evaluate_runs
from panet.metrics import IoUMeter
from panet.results import describe_setting, format_table, write_json

ex = make_experiment("panet_test")
EVALUATION_KEYS = ("encode", "batch_size", "resolution", "cache_gb", "cache_dir")


def test_setting(run, config):
    """(data config, model config, checkpoint or None) of this evaluation."""
    if config["test"]["notrain"]:
        return config["data"], config["model"], None
    if not config["test"]["checkpoint"]:
        raise ValueError("nothing to evaluate: set test.checkpoint=<a checkpoint of train.py>, or "
                         "add `notrain` to evaluate the ImageNet-initialised encoder (PANet-init)")
    state = load_checkpoint(config["test"]["checkpoint"])
    stored = state["config"]
    overrides = {key.split(".", 1)[1]: config["data"][key.split(".", 1)[1]]
                 for key in run.config_modifications.modified if key.startswith("data.")}
    model = {**stored["model"], "weights": None}  # the weights come from the checkpoint
    return {**stored["data"], **overrides}, model, state


@ex.main
def main(_run, test, seed, device):
    context = distributed.setup(device)
    try:
        data, model, state = test_setting(_run, _run.config)
        net = (build_model(model) if state is None else trained_model(state)).to(context.device)
        def run_dataset(run):  # run r samples its episodes with seed + r
            return build_dataset(data, train=False, n_episodes=test["episodes"], seed=seed + run,
                                 keep_original_labels=test["resolution"] == "original")

        dataset = run_dataset(0)
        classes = fold_classes(len(dataset.source.class_ids), data["fold"], train=False,
                               style=data["fold_style"])
        meter = evaluate_runs(
            net, itertools.chain([dataset], map(run_dataset, range(1, test["runs"]))),
            IoUMeter(classes, n_runs=test["runs"], rule=test["rule"]),
            **{key: test[key] for key in EVALUATION_KEYS}, workers=data["workers"],
            context=context, progress=context.is_main)
        if not context.is_main:
            return None
        summary = meter.summary()
        title = (f"{describe_setting(data)}; {test['runs']} runs x {test['episodes']} episodes, "
                 f"metric rule {test['rule']}, {test['resolution']} resolution")
        print(format_table(summary, dataset.source.class_name, title))
        record = {
            **summary,
            "setting": {"data": data, "model": model, "seed": seed,
                        **{k: test[k] for k in ("runs", "episodes", "rule", "resolution", "notrain")},
                        "checkpoint": test["checkpoint"],
                        "trained_steps": None if state is None else state["step"]},
        }
        directory = run_directory(_run, test["output_dir"])
        if directory is not None:
            print(f"results: {write_json(directory / 'results.json', record)}")
        return {key: summary[key] for key in ("mean_iou", "mean_iou_std", "binary_iou",
                                              "binary_iou_std")}
    finally:
        distributed.teardown(context)


if __name__ == "__main__":
    run_from_command_line(ex, is_main=distributed.is_main_process())
