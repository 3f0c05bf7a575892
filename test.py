"""Evaluate PANet (or the method of model.factory) on the test classes of a fold: runs x
episodes, mean-IoU and binary-IoU.

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
overrides it (panet/run/compose.py), and one that changes the protocol (dataset, size, fold,
classes) is printed. Results go to <run folder>/results.json (with 95% bootstrap intervals of
mean- and binary-IoU over episodes, test.bootstrap resamples, and the test's identity:
panet/run/identity.py) and the per-query counts of every episode to <run folder>/episodes.npz
(scripts/compare.py compares two tests of the same episodes); the run folder is runs/<id>/ or
test.output_dir. `precision` and `memory_format` (default fp32, contiguous; docs/precision.md)
apply to both evaluation paths and are recorded; a checkpoint trained in another precision than
the test's is said in one line.
"""

import sys
import warnings

from panet.base import distributed
from panet.base.monitor import ScalarLog
from panet.data import make_episode_dataset
from panet.data.protocols import REFERENCE, relative_path
from panet.evaluation import encode_path, evaluate_runs
from panet.evaluation.metrics import IoUMeter, reference_scores
from panet.models.builder import build_model, model_with_weights
from panet.models.factory import with_numerics
from panet.report.results import TestFacts, format_table, test_record, write_json
from panet.report.statistics import bootstrap_intervals, bootstrap_seed, records_of_test
from panet.run.experiments import announce_device, experiment, run_folder, script_main
from panet.run.identity import method_change, model_identity
from panet.run.disk import opened_source, read_checkpoint
from panet.run.validation import (classes_seen_in_training, episode_count_warning,
                                  precision_override, protocol_overrides)
from panet.settings import Settings, describe_setting

ex = experiment("test")


def load_model(settings: Settings, composition, is_main: bool):
    """The model tested, built from the composed model settings (a checkpoint's own, or
    PANet-init's from ImageNet) holding the checkpoint's weights, and its file (None for
    PANet-init); says on rank 0 what a run folder named and what changed the protocol."""
    if settings.test.notrain:
        return build_model(settings.model), None
    model_file = read_checkpoint(composition.checkpoint.path)
    notes = [protocol_overrides(composition)]
    if str(model_file.path) != settings.test.checkpoint:
        notes.insert(0, f"test.checkpoint={settings.test.checkpoint} is a run folder: testing "
                        f"{model_file.path}")
    for note in (note for note in notes if note and is_main):
        print(note, flush=True)
    for warning in (precision_override(composition),
                    method_change(model_file.identity, settings.model.factory)):
        if warning and is_main:
            print(warning, file=sys.stderr, flush=True)
    return model_with_weights(settings.model, model_file.state), model_file


@ex.main
def main(_run, _config):
    settings, composition = Settings.from_config(_config), ex.composition
    data, test = settings.data, settings.test
    context = distributed.setup(settings.run.device, settings.run.tf32)
    try:
        device = announce_device(_run, context, settings.run.tf32)
        slow = episode_count_warning(settings)
        if slow and context.is_main:
            print(slow, file=sys.stderr, flush=True)
        net, model_file = load_model(settings, composition, context.is_main)
        net = with_numerics(net.to(context.device), settings.run.numerics())
        folder = run_folder(_run, ex, context)
        source = opened_source(data, train=False)  # read once, shared by the runs
        datasets = [make_episode_dataset(data, test.episodes, settings.run.seed + run,
                                         train=False, source=source,
                                         keep_original_labels=test.resolution == "original",
                                         episodes_file=test.episodes_file)
                    for run in range(test.runs)]
        classes = data.classes(source, train=False)
        seen = classes_seen_in_training(composition, source)
        if seen and context.is_main:
            warnings.warn(seen, stacklevel=1)
        encoded, why = encode_path(net, test.encode)
        if why is not None and context.is_main:
            print(f"test.encode={test.encode}: {why}, so it is evaluated through its own "
                  "forward, per episode (as test.encode=episode)", flush=True)
        model = model_identity(net, settings.model)
        meter = evaluate_runs(net, datasets, IoUMeter(classes, n_runs=test.runs, rule=test.rule,
                                                      keep_records=True),
                              test.eval_options(data.workers, model["model_sha256"]), context,
                              progress=context.is_main)
        if not context.is_main:
            return None
        summary = meter.summary()
        if data.episode_rule in REFERENCE:
            summary["reference"] = {"protocol": data.episode_rule,
                                    **reference_scores(meter.counts)}
        records = records_of_test(meter.records, [dataset.episodes for dataset in datasets],
                                  lambda image_id: relative_path(source, image_id))
        if test.bootstrap:
            summary.update(bootstrap_intervals(records, classes, test.bootstrap,
                                               seed=bootstrap_seed(data.fold)))
        print(format_table(summary, source.class_name,
                           f"{describe_setting(data)}; {test.runs} runs x {test.episodes} "
                           f"episodes, metric rule {test.rule}, {test.resolution} resolution"))
        facts = TestFacts({**device, "processes": context.world_size}, model, model_file,
                          encoded, why, seen is not None)
        record = test_record(summary, composition, facts)
        if folder is not None:
            scalars = ScalarLog(_run, folder.path)
            scalars.log({k: summary[k] for k in ("mean_iou", "binary_iou")},
                        record["setting"]["trained_steps"] or 0, prefix="test/")
            scalars.close()
            records.save(folder.records)
            print(f"results: {write_json(folder.results, record)} (per-episode counts: "
                  f"{folder.records})")
        return {key: summary[key] for key in ("mean_iou", "mean_iou_std", "binary_iou",
                                              "binary_iou_std")}
    finally:
        distributed.teardown(context)


if __name__ == "__main__":
    script_main(ex)
