"""scripts/reproduce.py and its modules: table specs -> job commands, dry-run, skipping done jobs,
the markdown tables, prototype distances, overlays, loss curves, and one end-to-end synthetic
Table 1 (configs -> train.py/test.py subprocesses -> table1.md)."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from conftest import load_experiment, load_script
from panet.base.files import file_sha256
from panet.data.transforms import normalize
from panet.report.analysis import (evaluation_episodes, load_trained, measure_prototype_distance,
                                   prototype_distances, query_masks, read_training_curves)
from panet.report.figures import (FONT_SHARE, MIN_FONT_SIZE, WAY_COLOURS, caption_font,
                                  captioned_tiles, denormalize, episode_figure, moving_average,
                                  loss_terms, outlined, overlay, plot_loss_curves, save_qualitative,
                                  wrap)
from panet.reproduce import (TABLES, Scale, Setting, Variant, grid, jobs_for, render_latex,
                             render_markdown, specs)
from panet.reproduce import jobs as planning
from panet.reproduce.executors import LocalExecutor
from panet.reproduce.grid import Provenance, table_report
from panet.reproduce.outputs import composition
from panet.run import identity
from panet.weights.released import panet_to_released, panet_vgg16_shapes

reproduce = load_script("reproduce")
PAPER = specs.load_paper_results()


def fail_if_run(argv):
    raise AssertionError(f"no job should run: {argv}")


def run_jobs(jobs, run):
    """Run `jobs` one after another, each argv through `run` (scripts/reproduce.py's default)."""
    return LocalExecutor(run=run).run(jobs)


def table_rows(markdown):
    """(label, cells) of every markdown table row."""
    rows = []
    for line in markdown.splitlines():
        if line.startswith("| "):
            cells = [cell.strip() for cell in line.strip("|").split("|")]
            rows.append((cells[0], cells[1:]))
    return rows


def table_row(markdown, label):
    """The cells after the label of the first row labelled `label`."""
    for name, cells in table_rows(markdown):
        if name == label:
            return cells
    raise AssertionError(f"no row {label!r} in\n{markdown}")


# ---------------------------------------------------------------- specs and commands

def test_table_1_jobs_and_hand_checked_commands(tmp_path):
    jobs = jobs_for(TABLES["1"].settings(), Scale(tmp_path))
    names = [job.name for job in jobs]
    assert len(names) == len(set(names)) == 8 + 8 + 8  # init tests, trains, trained tests
    by_name = {job.name: job for job in jobs}
    run = tmp_path / "runs"
    assert by_name["train-voc-fold2-1way-1shot-align"].command == (
        f"python train.py with voc 1way 1shot "
        f"align data.fold=2 train.output_dir={run}/train-voc-fold2-1way-1shot-align")
    assert by_name["test-voc-fold2-1way-1shot-align-dense"].command == (
        f"python test.py with "
        f"test.checkpoint={run}/train-voc-fold2-1way-1shot-align/checkpoints/final.pt "
        f"test.output_dir={run}/test-voc-fold2-1way-1shot-align-dense")
    assert by_name["test-voc-fold3-1way-5shot-init"].command == (  # shares 1-shot's features
        f"python test.py with voc notrain 1way 5shot data.fold=3 "
        f"test.cache_dir={tmp_path}/feature_cache/init-voc-fold3 test.cache_gb=32.0 "
        f"test.output_dir={run}/test-voc-fold3-1way-5shot-init")
    assert by_name["test-voc-fold2-1way-1shot-align-dense"].needs == (
        "train-voc-fold2-1way-1shot-align",)
    assert by_name["train-voc-fold0-1way-5shot-align"].output == (
        run / "train-voc-fold0-1way-5shot-align" / "checkpoints" / "final.pt")


@pytest.mark.parametrize("number", sorted(TABLES))
def test_every_train_job_precedes_the_tests_of_its_checkpoint(number, tmp_path):
    jobs = jobs_for(TABLES[number].settings(), Scale(tmp_path))
    position = {job.name: index for index, job in enumerate(jobs)}
    for job in jobs:
        for needed in job.needs:
            assert position[needed] < position[job.name]
        if not job.trains:  # every test job either evaluates a listed checkpoint or is init
            checkpoint = [a for a in job.argv if a.startswith("test.checkpoint=")]
            assert bool(checkpoint) == bool(job.needs)
            assert checkpoint == [f"test.checkpoint={jobs[position[n]].output}" for n in job.needs]


def test_tests_of_one_checkpoint_run_together_and_share_a_feature_cache(tmp_path):
    jobs = jobs_for(TABLES["6"].settings(), Scale(tmp_path))
    names = [job.name for job in jobs]
    train = "train-voc-fold1-1way-5shot-align"
    start = names.index(train)
    tests = names[start + 1:start + 4]
    assert tests == [f"test-voc-fold1-1way-5shot-align-{weak}"
                     for weak in ("dense", "scribble", "bbox")]
    cache = tmp_path / "feature_cache" / train
    for job in jobs[start + 1:start + 4]:
        assert f"test.cache_dir={cache}" in job.argv and "test.cache_gb=32.0" in job.argv
    assert [job.cleanup for job in jobs[start + 1:start + 4]] == [(), (), (cache,)]
    alone = jobs_for(TABLES["1"].settings(), Scale(tmp_path))  # one test per checkpoint
    assert not any("test.cache_dir" in arg for job in alone if "align" in job.name
                   for arg in job.argv)
    no_cache = jobs_for(TABLES["6"].settings(), Scale(tmp_path, feature_cache_gb=0))
    assert not any(job.cleanup or any(arg.startswith("test.cache") for arg in job.argv)
                   for job in no_cache)


def test_a_feature_cache_is_removed_once_its_last_test_is_done(tmp_path):
    settings = [Setting("voc", 0, 1, 1, Variant(weak=weak)) for weak in ("dense", "bbox")]
    train, dense, bbox = jobs_for(settings, Scale(tmp_path))
    (cache,) = bbox.cleanup
    train.output.parent.mkdir(parents=True)
    train.output.touch()

    def fake_run(argv):
        (cache / "weights").mkdir(parents=True, exist_ok=True)
        job = next(job for job in (dense, bbox) if list(job.argv) == list(argv))
        job.output.parent.mkdir(parents=True, exist_ok=True)
        if job is dense:
            job.output.touch()
        return 0

    assert run_jobs([train, dense, bbox], fake_run) == [bbox.name]
    assert cache.is_dir()  # the box test failed: its rerun reads the features kept
    bbox.output.touch()
    assert run_jobs([train, dense, bbox], fail_if_run) == []
    assert not cache.exists()


def test_tables_share_jobs(tmp_path):
    scale = Scale(tmp_path)

    def names(number, trains=None):
        return {job.name for job in jobs_for(TABLES[str(number)].settings(), scale)
                if trains is None or job.trains == trains}

    assert names(2) == names(1)  # Table 2 reads Table 1's results
    assert names(1) - names(5) == {n for n in names(1) if n.endswith("-init")}  # T5's PANet = T1's
    assert names(5) - names(1) == {f"{kind}-voc-fold{f}-1way-{s}shot-noalign{suffix}"
                                   for f in range(4) for s in (1, 5)
                                   for kind, suffix in (("train", ""), ("test", "-dense"))}
    assert names(6, trains=True) == names(1, trains=True)  # weak supports: no new training
    assert len(names(6, trains=False)) == 3 * 8
    assert len(names(3)) == len(names(4)) == 16
    assert all("-2way-" in name for name in names(3))
    assert all(name.split("-")[1] == "coco" for name in names(4))


def test_synthetic_scale_commands(tmp_path):
    scale = Scale(tmp_path / "out", synthetic=True, data_root=tmp_path / "syn", steps=3,
                  test_runs=2, test_episodes=7, size=65)
    coco = Setting("coco", 1, 1, 5)
    train = planning.train_job(coco, scale)
    run = tmp_path / "out" / "runs" / "train-coco-fold1-1way-5shot-align"
    assert train.argv[3:] == ("coco", "small", "1way", "5shot", "align",
                              f"data.root={tmp_path / 'syn' / 'coco'}", "data.size=65",
                              "data.fold=1", "train.steps=3", f"train.output_dir={run}")
    scribble = planning.test_job(Setting("voc", 0, 1, 1, Variant(weak="scribble")), scale)
    assert scribble.argv[3:] == (
        "scribble", f"data.root={tmp_path / 'syn'}",
        f"test.checkpoint={tmp_path}/out/runs/train-voc-fold0-1way-1shot-align/checkpoints/"
        "final.pt",
        "test.runs=2", "test.episodes=7",
        f"test.output_dir={tmp_path}/out/runs/test-voc-fold0-1way-1shot-align-scribble")
    init = planning.test_job(Setting("voc", 3, 2, 1, Variant(init=True)), scale)
    assert init.argv[3:7] == ("synthetic", "small", "notrain", "2way")
    assert "data.test_split=trainaug" in init.argv  # the paper's (released) test split
    assert train.images == 3 * (5 + 1) and scribble.images == 2 * 7 * (1 + 1)


def test_paper_scale_data_root_and_toy_knobs(tmp_path):
    scale = Scale(tmp_path, data_root=tmp_path / "data")
    assert f"data.root={tmp_path / 'data' / 'COCO'}" in planning.train_job(
        Setting("coco", 0, 1, 1), scale).argv
    with pytest.raises(ValueError, match="toy-scale knobs"):
        Scale(tmp_path, steps=10)
    with pytest.raises(ValueError, match="needs data_root"):
        Scale(tmp_path, synthetic=True)
    with pytest.raises(SystemExit):
        reproduce.parse_args(["--table", "1", "--steps", "3"])
    with pytest.raises(SystemExit):
        reproduce.parse_args(["--table", "1", "--synthetic", "--test-episodes", "0"])
    with pytest.raises(ValueError, match=">= 1"):
        Scale(tmp_path, synthetic=True, data_root=tmp_path, test_episodes=0)


def test_encoder_parameters_are_counted_on_the_model():
    assert specs.encoder_parameters(synthetic_scale=False) == 14_714_688


# ---------------------------------------------------------------- dry run and job running

def test_dry_run_lists_every_command_with_status_and_estimate(tmp_path, capsys):
    out = tmp_path / "results"
    argv = ["--table", "1", "--dry-run", "--out", str(out), "--gpu-seconds-per-image", "0.06"]
    assert reproduce.main(argv, run=fail_if_run) == 0
    printed = capsys.readouterr().out
    jobs = jobs_for(TABLES["1"].settings(), Scale(out))
    commands = [line.strip() for line in printed.splitlines() if line.startswith("    python")]
    assert commands == [job.command for job in jobs]
    assert printed.count("[pending") == 24 and "14,714,688" in printed
    # trains: 4 folds x 30,000 steps x (2 + 6) images x 0.06 s; tests (16): 4 folds x (2 + 6)
    # images x 5,000 episodes x 0.02 s, twice (init and trained)
    hours = (4 * 30000 * 8 * 0.06 + 2 * 4 * 5000 * 8 * 0.02) / 3600
    assert f"{hours:.2f} GPU hours pending" in printed and "an estimate" in printed
    assert not out.exists()  # nothing written


def test_dry_run_counts_only_the_jobs_not_done(synthetic_table1, tmp_path, capsys):
    """A done job is listed as done and left out of the pending hours; an unfinished training
    run resumes from its last.pt, and the tests of its checkpoint are changed (it runs again)."""
    out, argv = copied(synthetic_table1, tmp_path)
    train = out / "runs" / "train-voc-fold1-1way-1shot-align" / "checkpoints"
    (train / "final.pt").rename(train / "last.pt")
    assert reproduce.main([*argv, "--dry-run", "--gpu-seconds-per-image", "3600"],
                          run=fail_if_run) == 0
    printed = capsys.readouterr().out
    # 1 step x (1 + 1) images x 1 h; a test: 1 x 1 episode x 2 images x 1/3 h
    assert "[done, ~2.00 GPU h] train-voc-fold0-1way-1shot-align\n" in printed
    assert (f"[pending, ~2.00 GPU h, resumes from {train / 'last.pt'}] "
            "train-voc-fold1-1way-1shot-align\n") in printed
    assert "[changed, ~0.67 GPU h] test-voc-fold1-1way-1shot-align-dense\n" in printed
    assert f"{2 + 2 / 3:.2f} GPU hours pending" in printed
    assert ("test-voc-fold1-1way-1shot-align-dense: it tests the checkpoint of "
            "train-voc-fold1-1way-1shot-align, which is not done") in printed
    assert "40 jobs: 38 done, 1 changed, 0 running, 1 pending, 0 blocked, 0 failed" in printed


def test_dry_run_of_the_analysis_on_absent_synthetic_data(tmp_path, capsys):
    absent = tmp_path / "nothing"
    argv = ["--analysis", "prototype-distance", "--dry-run", "--synthetic", "--data-root",
            str(absent), "--out", str(tmp_path / "out"), "--steps", "7", "--test-episodes", "3"]
    assert reproduce.main(argv, run=fail_if_run) == 0
    printed = capsys.readouterr().out
    assert [line for line in printed.splitlines() if line.startswith("[")] == [
        "[pending, ~0.00 GPU h] train-voc-fold0-1way-5shot-align",
        "[pending, ~0.00 GPU h] train-voc-fold0-1way-5shot-noalign"]
    assert f"{2 * 7 * 6 * 0.06 / 3600:.2f} GPU hours pending" in printed
    assert f"it would be generated into {absent}" in printed and not absent.exists()
    assert "over 3 episodes per model" in printed


def test_jobs_that_cannot_run_here_stop_the_command_before_the_first(tmp_path, capsys):
    """`--table 6 --data-root DIR` without the datasets nor the ImageNet file: each problem
    once, naming the first job it stops and how many more; nothing runs, nothing is written.
    --dry-run lists the same problems after its plan, except the ImageNet file, which a run
    downloads (here it cannot: tests/conftest.py points the download at a closed port), and
    exits 0."""
    out, data = tmp_path / "results", tmp_path / "data"
    argv = ["--table", "6", "--data-root", str(data), "--out", str(out)]
    assert reproduce.main(argv, run=fail_if_run) == 2
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "These jobs cannot run; nothing was started:" and not out.exists()
    jobs = jobs_for(TABLES["6"].settings(), Scale(out, data_root=data))
    # every job reads the missing VOC root; the train jobs (and PANet-init tests, if any) need
    # the missing ImageNet file
    weights = [job for job in jobs if "notrain" in job.argv or job.trains]
    by_problem = {line.split(": ", 1)[1].split("=")[0]: line for line in lines[1:]}
    assert set(by_problem) == {"data.root", "model.weights"}, lines
    assert by_problem["data.root"].startswith(f"  {jobs[0].name} and {len(jobs) - 1} more: ")
    assert str(data / "VOC2012") in by_problem["data.root"]
    assert by_problem["model.weights"].startswith(
        f"  {weights[0].name} and {len(weights) - 1} more: ")
    assert reproduce.main([*argv, "--dry-run"], run=fail_if_run) == 0
    listed = capsys.readouterr().out.split("Here, these jobs could not run:\n")[1].splitlines()
    assert listed == [line for line in lines[1:] if "model.weights" not in line]


def test_no_table_is_written_when_no_test_ran(synthetic_root, tmp_path, capsys):
    out = tmp_path / "results"
    argv = ["--table", "1", "--synthetic", "--data-root", str(synthetic_root), "--out", str(out),
            *SMALLEST]
    assert reproduce.main(argv, run=lambda job_argv: 1) == 1
    last = capsys.readouterr().out.splitlines()[-1]
    assert last.startswith("not written: the jobs test-voc-fold0-1way-1shot-init, ")
    assert not (out / "table1.md").exists() and not (out / "table1.tex").exists()


def test_interrupting_the_jobs_explains_how_to_continue(synthetic_root, tmp_path, capsys):
    def interrupted(argv):
        raise KeyboardInterrupt

    assert reproduce.main(["--table", "5", "--synthetic", "--data-root", str(synthetic_root),
                           "--out", str(tmp_path), *SMALLEST], run=interrupted) == 130
    assert "run the same command again" in capsys.readouterr().out


def test_run_jobs_skips_done_resumes_partial_and_blocks_dependents(tmp_path):
    scale = Scale(tmp_path)
    settings = [Setting("voc", fold, 1, 1) for fold in (0, 1, 2)]
    jobs = jobs_for(settings, scale)  # train, test per fold
    done_train, partial_train, failing_train = (job for job in jobs if job.trains)
    done_train.output.parent.mkdir(parents=True)
    done_train.output.touch()
    partial_train.output.parent.mkdir(parents=True)
    (partial_train.output.parent / "last.pt").touch()
    ran = []

    def fake_run(argv):
        ran.append(list(argv))
        job = next(job for job in jobs if list(job.argv) == argv[:len(job.argv)])
        if job is failing_train:
            return 3
        job.output.parent.mkdir(parents=True, exist_ok=True)
        job.output.touch()
        return 0

    failed = run_jobs(jobs, fake_run)
    assert failed == [failing_train.name, "test-voc-fold2-1way-1shot-align-dense"]
    assert ran == [list(jobs[1].argv), list(partial_train.argv) + [
        f"train.resume={partial_train.output.parent / 'last.pt'}"], list(jobs[3].argv),
        list(failing_train.argv)]
    assert run_jobs(jobs[:4], fail_if_run) == []  # everything done now


def test_a_job_that_exits_0_without_its_output_counts_as_failed(tmp_path):
    job = planning.train_job(Setting("voc", 0, 1, 1), Scale(tmp_path))
    assert run_jobs([job], lambda argv: 0) == [job.name]


# ---------------------------------------------------------------- markdown

def render_table(spec, results, paper, commit, synthetic_scale, parameters=None):
    """tableN.md of `results` (and, checked on the way, its LaTeX twin)."""
    report = table_report(spec, results, paper, Provenance(commit, synthetic_scale,
                                                           parameters=parameters))
    latex = render_latex(report)
    assert latex.count(r"\toprule") == latex.count(r"\bottomrule") == 1
    assert latex.count(r" \\") >= len(report.rows) + 1  # header and every row end their line
    return render_markdown(report)


def fake_result(path, mean_iou, binary_iou, steps=30000, **setting):
    record = {"mean_iou": mean_iou, "binary_iou": binary_iou, "setting": {
        "data": {"name": "pascal", "test_split": "trainaug", "size": 417}, "model": {
            "encoder": "vgg16"}, "rule": "released", "resolution": "label", "runs": 5,
        "episodes": 1000, "trained_steps": steps, **setting}}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))


def test_markdown_puts_our_numbers_beside_the_papers(tmp_path):
    scale = Scale(tmp_path)
    spec = TABLES["5"]
    for fold in range(4):
        for shots in (1, 5):
            for align in (True, False):
                job = planning.test_job(Setting("voc", fold, 1, shots, Variant(align=align)), scale)
                fake_result(job.output, mean_iou=0.40 + 0.01 * fold + 0.1 * (shots == 5)
                            + 0.05 * align, binary_iou=0.7)
    results = grid.read_results(jobs_for(spec.settings(), scale))
    markdown = render_table(spec, results, PAPER, commit="abc123", synthetic_scale=False)
    # no PAR 1-shot: folds 40, 41, 42, 43 -> 41.5 vs the paper's 47.2
    assert table_row(markdown, "PANet w/o PAR (ours)") == ["41.5", "51.5"]
    assert table_row(markdown, "PANet w/o PAR (paper)") == ["47.2", "54.9"]
    assert table_row(markdown, "difference (ours - paper)") == ["-5.7", "-3.4"]
    assert table_row(markdown, "PANet (ours)") == ["46.5", "56.5"]
    assert "| method | 1-shot | 5-shot |" in markdown
    assert "commit: abc123" in markdown and "test split trainaug" in markdown
    assert "runs x episodes: 5 x 1000" in markdown and "All 16 test jobs done" in markdown
    assert "NOT comparable" not in markdown


def test_markdown_per_fold_cells_pending_cells_and_paper_only_rows(tmp_path):
    scale = Scale(tmp_path)
    for fold in (0, 1, 2):  # fold 3 still missing
        job = planning.test_job(Setting("voc", fold, 1, 1), scale)
        fake_result(job.output, mean_iou=[0.423, 0.5, 0.6][fold], binary_iou=0.6)
    results = grid.read_results(jobs_for(TABLES["1"].settings(), scale))
    markdown = render_table(TABLES["1"], results, PAPER, commit="c", synthetic_scale=True,
                            parameters=582_176)
    ours = table_row(markdown, "PANet (ours)")
    assert ours[:5] == ["42.3", "50.0", "60.0", "—", "—"]  # no mean while fold 3 is missing
    assert ours[-1] == "0.6"  # the parameter count of the model we passed
    difference = table_row(markdown, "difference (ours - paper)")  # first: PANet-init's, all —
    assert set(difference[:10]) == {"—"}
    assert table_row(markdown, "SG-One (paper)")[:5] == ["40.2", "58.4", "48.4", "38.4", "46.3"]
    assert "13 of 16 test jobs have no results yet" in markdown
    assert "NOT comparable" in markdown
    table2 = render_table(TABLES["2"], {}, PAPER, commit="c", synthetic_scale=False)
    assert table_row(table2, "FG-BG (paper)") == ["55.0", "—"]  # the paper reports no 5-shot
    assert table_row(table2, "PANet (ours)") == ["—", "—"]


def test_cells_from_tests_with_unevaluated_classes_are_marked(tmp_path):
    scale = Scale(tmp_path)
    for fold in range(4):
        for shots in (1, 5):
            job = planning.test_job(Setting("voc", fold, 1, shots, Variant(align=True)), scale)
            fake_result(job.output, mean_iou=0.5, binary_iou=0.7)
            if (fold, shots) == (2, 5):  # its run 0 never drew class 12
                record = json.loads(job.output.read_text())
                job.output.write_text(json.dumps({**record, "unevaluated": {"0": [12]}}))
    results = grid.read_results(jobs_for(TABLES["5"].settings(), scale))
    report = table_report(TABLES["5"], results, PAPER, Provenance("c"))
    markdown = render_markdown(report)
    assert table_row(markdown, "PANet (ours)") == ["50.0", "50.0†"]
    assert "†: a test of this cell left classes unevaluated" in markdown
    assert r"$50.0^\dagger$" in render_latex(report) and "$50.0$" in render_latex(report)


def test_markdown_binary_iou_and_two_way_columns(tmp_path):
    scale = Scale(tmp_path)
    for fold in range(4):
        for shots in (1, 5):
            job = planning.test_job(Setting("voc", fold, 2, shots), scale)
            fake_result(job.output, mean_iou=0.45, binary_iou=0.60 + 0.02 * fold)
    results = grid.read_results(jobs_for(TABLES["3"].settings(), scale))
    markdown = render_table(TABLES["3"], results, PAPER, commit="c", synthetic_scale=False)
    assert table_row(markdown, "PANet (ours)") == ["45.0", "45.0", "63.0", "63.0"]
    assert table_row(markdown, "PANet (paper)") == ["45.1", "53.1", "64.2", "67.9"]
    assert table_row(markdown, "difference (ours - paper)") == ["-0.1", "-8.1", "-1.2", "-4.9"]
    assert table_row(markdown, "PL (paper)") == ["—", "—", "42.7", "43.7"]


def test_bad_result_and_paper_files_are_named(tmp_path):
    broken = tmp_path / "results.json"
    broken.write_text("{not json")
    with pytest.raises(ValueError, match=r"results\.json is not valid JSON.*delete it"):
        grid.read_result(broken)
    broken.write_text(json.dumps({"mean_iou": 0.5}))
    with pytest.raises(ValueError, match=r"lacks \['binary_iou', 'setting'\]"):
        grid.read_result(broken)
    assert grid.read_result(tmp_path / "absent.json") is None
    with pytest.raises(ValueError, match="no number at table1_pascal_1way_mean_iou / PANet"):
        render_table(TABLES["1"], {}, {"table1_pascal_1way_mean_iou": {}}, commit="c",
                     synthetic_scale=False)
    with pytest.raises(ValueError, match="cannot read the paper's numbers"):
        specs.load_paper_results(tmp_path / "absent.json")


# ---------------------------------------------------------------- prototype distance

def slow_prototype_distances(prototypes, query_features, query_labels):
    """Loop reference: upsample each query's features to H x W, average them over each mask
    (foreground = way c, background = everything else), Euclidean distance to p_j."""
    B, Q = query_features.shape[:2]
    ways = prototypes.shape[1] - 1
    size = query_labels.shape[-2:]
    out = torch.empty(B, Q, 1 + ways, dtype=torch.float64)
    for b in range(B):
        for q in range(Q):
            up = F.interpolate(query_features[b, q][None], size=size, mode="bilinear",
                               align_corners=False)[0]
            for j in range(1 + ways):
                labels = query_labels[b, q]
                mask = (labels == j) if j else ~((labels >= 1) & (labels <= ways))
                if not mask.any():
                    out[b, q, j] = float("nan")
                    continue
                pooled = (up * mask).sum(dim=(1, 2)) / (mask.sum() + 1e-5)
                out[b, q, j] = torch.sqrt(((pooled - prototypes[b, j]) ** 2).sum())
    return out


def test_prototype_distances_match_a_loop():
    generator = torch.Generator().manual_seed(0)
    B, Q, W, C, h, w, H, Wd = 2, 2, 2, 6, 5, 7, 19, 26
    prototypes = torch.randn(B, 1 + W, C, generator=generator, dtype=torch.float64)
    features = torch.randn(B, Q, C, h, w, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, 1 + W, (B, Q, H, Wd), generator=generator)
    labels[..., :3, :] = 255
    labels[1, 0][labels[1, 0] == 2] = 0  # way 2 absent from this query -> NaN
    fast = prototype_distances(prototypes, features, labels)
    slow = slow_prototype_distances(prototypes, features, labels)
    assert torch.isnan(fast[1, 0, 2]) and torch.isnan(slow[1, 0, 2])
    torch.testing.assert_close(fast, slow, equal_nan=True)


def test_query_masks_treat_void_as_background_like_supports():
    labels = torch.tensor([[[[0, 1, 2, 255]]]])
    masks = query_masks(labels, ways=2)[0, 0, :, 0]  # (1 + W) x 4
    assert masks.tolist() == [[1, 0, 0, 1], [0, 1, 0, 0], [0, 0, 1, 0]]


# ---------------------------------------------------------------- overlays and curves

def test_overlay_colours_mask_pixels_and_dims_the_rest():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(6, 5, 3), dtype=np.uint8)
    labels = np.zeros((6, 5), dtype=np.int64)
    labels[1, 1:3], labels[4, 2], labels[5, 4] = 1, 2, 255
    blended = overlay(image, labels, opacity=0.25, dim=0.4)
    for y, x in np.ndindex(6, 5):
        if labels[y, x] in (1, 2):
            colour = np.array(WAY_COLOURS[labels[y, x] - 1])
            expected = np.round(0.75 * image[y, x] + 0.25 * colour)
        else:
            expected = np.round(0.6 * image[y, x])
        assert blended[y, x].tolist() == expected.tolist(), (y, x)
    solid = overlay(image, labels, opacity=1.0)
    assert solid[1, 1].tolist() == list(WAY_COLOURS[0]) and solid[4, 2].tolist() == list(
        WAY_COLOURS[1])
    with pytest.raises(ValueError, match="labels are"):
        overlay(image, labels[:5])


def test_outlines_draw_each_way_region_border_in_its_colour():
    picture = np.zeros((7, 7, 3), dtype=np.uint8)
    labels = np.zeros((7, 7), dtype=np.int64)
    labels[1:4, 1:4], labels[5, 5], labels[6, 0] = 1, 2, 255  # a 3 x 3 square, a dot, void
    drawn = outlined(picture, labels)  # 7 px: 1-pixel outlines
    border = {(y, x) for y in range(1, 4) for x in range(1, 4)} - {(2, 2)}
    for y, x in np.ndindex(7, 7):
        expected = (WAY_COLOURS[0] if (y, x) in border else
                    WAY_COLOURS[1] if (y, x) == (5, 5) else (0, 0, 0))
        assert drawn[y, x].tolist() == list(expected), (y, x)
    assert not picture.any()  # a new array


def test_denormalize_inverts_the_input_normalisation():
    image = np.random.default_rng(1).integers(0, 256, size=(4, 3, 3), dtype=np.uint8)
    assert np.array_equal(denormalize(normalize(image)), image)


@pytest.mark.parametrize("width", [12, 65, 129, 417, 2000])
def test_captions_fit_their_tile_and_grow_with_it(width):
    caption = "support w2 s5 (class 17) query 1: ground truth"
    font = caption_font(width)
    lines = wrap(caption, font, width - 2)
    assert " ".join(lines).replace(" ", "") == caption.replace(" ", "")  # nothing lost
    assert all(font.getlength(line) <= width - 2 or len(line) == 1 for line in lines)
    assert font.size == max(MIN_FONT_SIZE, round(width * FONT_SHARE))
    tile = np.zeros((20, width, 3), dtype=np.uint8)
    captioned, = captioned_tiles([tile], [caption])
    assert captioned.size == (width, 20 + len(lines) * sum(font.getmetrics()) + 2)


def test_episode_figure_tiles(tmp_path):
    rng = np.random.default_rng(2)
    W, S, H, Wd = 2, 2, 12, 16
    images = rng.integers(0, 256, size=(W * S + 1, H, Wd, 3), dtype=np.uint8)
    fg = torch.zeros(1, W, S, H, Wd)
    fg[0, 1, 0, 2:5, 3:9] = 1
    batch = {"support_images": torch.stack([normalize(i) for i in images[:-1]]).view(
        1, W, S, 3, H, Wd), "support_fg": fg, "query_images": normalize(images[-1])[None, None],
        "query_labels": torch.from_numpy(rng.integers(0, 3, size=(1, 1, H, Wd))),
        "class_ids": torch.tensor([[4, 7]])}
    predictions = torch.from_numpy(rng.integers(0, 3, size=(1, 1, H, Wd)))
    figure = np.asarray(episode_figure(batch, predictions, 0))
    tile_width = Wd + 4  # tile and gap
    top = figure.shape[0] - H
    assert figure.shape[1:] == (6 * Wd + 5 * 4, 3)  # W*S supports + prediction + truth
    assert figure.shape[0] > H  # a caption band above the tiles
    def tinted(image, labels):  # each tile: the overlay, its ways' borders outlined
        return outlined(overlay(image, labels), labels)

    third_support = figure[top:, 2 * tile_width:2 * tile_width + Wd]  # way 2, shot 1
    assert np.array_equal(third_support, tinted(images[2], fg[0, 1, 0].long() * 2))
    prediction = figure[top:, 4 * tile_width:4 * tile_width + Wd]
    assert np.array_equal(prediction, tinted(images[-1], predictions[0, 0]))
    truth = figure[top:, 5 * tile_width:5 * tile_width + Wd]
    assert np.array_equal(truth, tinted(images[-1], batch["query_labels"][0, 0]))


def test_training_curves_later_value_of_a_step_wins(tmp_path):
    """A resumed run appends to its metrics.json, redoing the steps after its last checkpoint."""
    (tmp_path / "metrics.json").write_text(json.dumps(
        {"loss": {"steps": [1, 2, 3, 3, 4], "values": [5.0, 4.0, 3.0, 2.5, 2.0],
                  "timestamps": [""] * 5}}))
    assert read_training_curves(tmp_path) == {"loss": ([1, 2, 3, 4], [5.0, 4.0, 2.5, 2.0])}
    (tmp_path / "metrics.json").write_text("[")
    with pytest.raises(ValueError, match=r"metrics\.json is not a sacred metrics file"):
        read_training_curves(tmp_path)
    with pytest.raises(FileNotFoundError, match="not the run folder of a train.py run"):
        read_training_curves(tmp_path / "elsewhere")


def test_moving_average_matches_a_loop_and_plot_writes_a_png(tmp_path):
    values = [3.0, 1.0, 4.0, 1.0, 5.0, 9.0]
    expected = [np.mean(values[max(0, i - 2):i + 1]) for i in range(len(values))]
    np.testing.assert_allclose(moving_average(values, 3), expected)
    curves = {"lr": ([1, 2, 3], [1e-3] * 3), "seg_loss": ([1, 2, 3], [2.0, 1.5, 1.0]),
              "align_loss": ([1, 2, 3], [0.0, 0.0, 0.0]), "loss": ([1, 2, 3], [3.0, 2.0, 1.0]),
              "aux_loss": ([1, 2, 3], [1.0, 0.5, 0.0])}
    # the total first, then every named term a method logged but those identically 0
    assert loss_terms(curves) == ["loss", "seg_loss", "aux_loss"]
    path = plot_loss_curves({"1-shot": {"PANet": curves}}, tmp_path / "curves.png")
    assert Image.open(path).format == "PNG"


# ---------------------------------------------------------------- end to end (synthetic)

SMALLEST = ["--steps", "1", "--test-runs", "1", "--test-episodes", "1", "--size", "65"]


@pytest.fixture(scope="module")
def synthetic_table1(synthetic_root, tmp_path_factory):
    """(out, argv) of the synthetic Table 1 with two seeds, on its own copy of the data."""
    out = tmp_path_factory.mktemp("reproduce")
    data = shutil.copytree(synthetic_root, out.parent / f"{out.name}-data")
    argv = ["--table", "1", "--synthetic", "--data-root", str(data), "--out", str(out),
            "--seeds", "2", *SMALLEST]
    assert reproduce.main(argv) == 0
    return out, argv


def copied(synthetic_table1, tmp_path):
    """A copy of the synthetic Table 1's outputs, and the argv writing there."""
    out, argv = synthetic_table1
    copy = shutil.copytree(out, tmp_path / "results")
    return copy, [*argv[:argv.index("--out")], "--out", str(copy), *argv[argv.index("--out") + 2:]]


def test_synthetic_table_1_end_to_end(synthetic_table1):
    """Two training seeds; test runs of 1 episode, so every bootstrap resample redraws that
    episode and each interval has zero width at the cell's value."""
    out, _ = synthetic_table1
    markdown = (out / "table1.md").read_text()
    assert "NOT comparable" in markdown and "runs x episodes: 1 x 1" in markdown
    assert "data: synthetic, test split trainaug, input 65 px" in markdown
    assert "All 24 test jobs done" in markdown and "2 training seeds (1234, 1235)" in markdown
    rows = table_rows(markdown)
    labels = [label for label, _ in rows]
    small_encoder = specs.encoder_parameters(synthetic_scale=True) / 1e6

    def result(job, fold, shots):
        return json.loads((out / "runs" / f"test-voc-fold{fold}-1way-{shots}shot-{job}"
                           / "results.json").read_text())

    for method, label, jobs in (("PANet-init", "PANet-init, random-init small encoder (ours)",
                                 ["init"]), ("PANet", "PANet (ours)",
                                             ["align-dense", "align-seed1235-dense"])):
        cells = []
        for shots in (1, 5):
            per_seed = np.array([[100 * result(job, fold, shots)["mean_iou"] for fold in range(4)]
                                 for job in jobs])  # seed x fold
            # one episode tests one class of five: the cell is marked partial
            partial = [[bool(result(job, fold, shots)["unevaluated"]) for fold in range(4)]
                       for job in jobs]
            columns = [(per_seed[:, fold], any(row[fold] for row in partial))
                       for fold in range(4)] + [(per_seed.mean(axis=1), any(map(any, partial)))]
            for values, marked in columns:
                mean = values.mean()
                spread = f" ± {values.std(ddof=1):.1f}" if len(jobs) > 1 else ""
                cells.append(f"{mean:.1f}{'†' * marked}{spread} [{mean:.1f}, {mean:.1f}]")
        index = labels.index(label)
        assert rows[index][1] == cells + [f"{small_encoder:.1f}"]
        entry = PAPER["table1_pascal_1way_mean_iou"][method]
        paper = [*entry["1shot"], entry["1shot_mean"], *entry["5shot"], entry["5shot_mean"]]
        assert rows[index + 1][0] == f"{method} (paper)"
        assert rows[index + 2][0] == "difference (ours - paper)"
        assert rows[index + 3] == ("paper in our interval", [
            "yes" if f"{p:.1f}" == c.split()[0].rstrip("†") else "no"
            for p, c in zip(paper, cells)] + ["—"])
    assert "## How these numbers were made" in markdown and "How to cite" in markdown
    assert "seed=1235" in markdown  # the exact command of a second-seed training job
    latex = (out / "table1.tex").read_text()  # the same table, booktabs, for a paper
    assert r"\begin{tabular}{l" + "r" * 11 + "}" in latex and r"\toprule" in latex
    ours = next(line for line in latex.splitlines() if line.startswith("PANet (ours) & "))
    mean_and_std, interval = cells_of(rows, "PANet (ours)")[0].split(" [")
    assert ours.split(" & ")[1] == ("$" + mean_and_std.replace(" ± ", r" \pm ").replace(
        "†", r"^\dagger") + "$"
                                    + r" {\scriptsize $[" + interval.rstrip("]") + "]$}")
    assert r"\caption{PASCAL-5i" in latex and r"\label{tab:table1-" in latex  # no "Table 1:"
    assert "% python train.py with synthetic small 1way 1shot align" in latex  # commands: notes
    table = latex[latex.index(r"\begin{table}"):]
    assert "python train.py" not in table and "%" not in table.replace(r"\%", "")


def cells_of(rows, label):
    return next(cells for name, cells in rows if name == label)


def test_rerun_skips_every_done_job(synthetic_table1, capsys):
    out, argv = synthetic_table1
    before = (out / "table1.md").read_text()
    assert reproduce.main(argv, run=fail_if_run) == 0
    assert capsys.readouterr().out.count("[done]") == 40  # 8 + 2 x (8 train + 8 test)
    assert (out / "table1.md").read_text().split("- commit")[0] == before.split("- commit")[0]


@pytest.mark.filterwarnings("ignore:classes never evaluated")  # two-episode tests
def test_outputs_made_with_other_settings_are_not_taken_as_done(synthetic_table1, tmp_path,
                                                                capsys):
    """A job is done only when its output records the settings the job asks for: more test
    episodes than before, or a test run by hand into a job's folder, are found and named; the
    jobs run again only with --rerun-changed, which keeps the old folders."""
    copy, argv = copied(synthetic_table1, tmp_path)
    assert reproduce.main(more_episodes(argv), run=fail_if_run) == 2
    refused = capsys.readouterr().err
    assert refused.count("test.episodes: 1 -> 2") == 24 and "nothing was started" in refused
    assert "train-" not in refused  # the trained models are what the jobs ask for

    dense = copy / "runs" / "test-voc-fold0-1way-1shot-align-dense"
    checkpoint = copy / "runs" / "train-voc-fold0-1way-1shot-align" / "checkpoints" / "final.pt"
    run = load_experiment("test").run(named_configs=["5shot", "bbox"], options={
        "--loglevel": "ERROR"}, config_updates={"test": {
            "checkpoint": str(checkpoint), "output_dir": str(dense), "overwrite": True,
            "runs": 1, "episodes": 1}, "data": {"workers": 0}})
    assert run.status == "COMPLETED"
    capsys.readouterr()
    assert reproduce.main([*argv, "--dry-run"], run=fail_if_run) == 0
    listed = capsys.readouterr().out
    assert "test-voc-fold0-1way-1shot-align-dense: data.shots: 5 -> 1" in listed
    assert "test-voc-fold0-1way-1shot-align-dense: data.weak: 'bbox' -> 'dense'" in listed

    ran = []

    def fake_run(job_argv):  # a test job's results, written as test.py would name them
        ran.append(job_argv)
        output = Path(next(a for a in job_argv if a.startswith("test.output_dir="))
                      .split("=", 1)[1])
        fake_result(output / "results.json", 0.5, 0.6)
        return 0

    assert reproduce.main([*argv, "--rerun-changed"], run=fake_run) == 0
    assert len(ran) == 1 and (dense.parent / f"{dense.name}.replaced-1" / "results.json").is_file()


def more_episodes(argv):
    return [*argv[:argv.index("--test-episodes") + 1], "2",
            *argv[argv.index("--test-episodes") + 2:]]


def test_status_says_changed_where_a_plain_run_refuses(synthetic_table1, tmp_path, capsys):
    _, argv = copied(synthetic_table1, tmp_path)
    assert reproduce.main([*more_episodes(argv), "--status"]) == 0
    printed = capsys.readouterr().out
    changed = [line for line in printed.splitlines() if line.startswith("[changed] test-")]
    assert len(changed) == 24 and all(line.endswith("test.episodes: 1 -> 2") for line in changed)
    assert printed.endswith(
        "40 jobs: 16 done, 24 changed, 0 running, 0 pending, 0 blocked, 0 failed\n")
    assert reproduce.main(more_episodes(argv), run=fail_if_run) == 2  # refused: those 24


def test_results_of_another_commit_are_reused_and_keep_their_commit(synthetic_table1, tmp_path,
                                                                    capsys):
    """A result made by another commit is reused (its identity holds no commit); the table's
    header names that commit, and the provenance names each result's own commit."""
    out, argv = copied(synthetic_table1, tmp_path)
    other, dense = "0" * 40, "test-voc-fold0-1way-1shot-align-dense"
    path = out / "runs" / dense / "results.json"
    record = json.loads(path.read_text())
    path.write_text(json.dumps({**record, "code": {"commit": other, "dirty": True}}))
    current = grid.code_label(identity.code_version())
    assert reproduce.main(argv, run=fail_if_run) == 0
    markdown = (out / "table1.md").read_text()
    note = f"results from other commits than the current {current}: {other} (dirty) (1 test)"
    assert f"- {note}\n" in markdown
    assert f"- results of commit {other} (dirty): {dense}\n" in markdown
    ours = next(line for line in markdown.splitlines()
                if line.startswith(f"- results of commit {current}: "))
    assert len(ours.split(": ", 1)[1].split(", ")) == 23 and dense not in ours
    assert (out / "table1.tex").read_text().startswith(f"% {note}\n")


def test_edited_class_lists_change_the_training_jobs_and_their_tests(synthetic_table1, tmp_path,
                                                                     capsys):
    """The data identity (the per-class image lists) is part of a train job's: one edited list
    makes every train job on that data changed, and the tests of their checkpoints; PANet-init
    tests read no trained model and stay done."""
    _, argv = copied(synthetic_table1, tmp_path)
    lists = (Path(argv[argv.index("--data-root") + 1]) / "VOC2012" / "ImageSets" / "Segmentation"
             / "trainaug" / "class1.txt")
    kept = lists.read_text()
    lists.write_text("\n".join(kept.split()[1:]) + "\n")
    try:
        assert reproduce.main([*argv, "--status"]) == 0
        printed = capsys.readouterr().out
        assert reproduce.main(argv, run=fail_if_run) == 2
        refused = capsys.readouterr().err
    finally:
        lists.write_text(kept)
    states = {line.split()[1][:-1]: line.split()[0] for line in printed.splitlines()
              if line.startswith("[")}
    assert {name for name, state in states.items() if state == "[changed]"} == {
        name for name in states if not name.endswith("-init")}
    assert refused.count(": data: '") == 16  # "data: '<recorded>' -> '<now>'" per train job
    assert refused.count("which is not done") == 16


def released_snapshot(folder, value):
    """A released snapshot of fold 0, 1-way 5-shot PASCAL under `folder`, every weight `value`
    (each tensor one stored number, expanded: a small file)."""
    state = panet_to_released({name: torch.full((1,), value).expand(shape)
                               for name, shape in panet_vgg16_shapes().items()})
    path = folder / "PANet_VOC_align_sets_0_1way_5shot_[train]" / "1" / "snapshots" / "30000.pth"
    path.parent.mkdir(parents=True)
    torch.save(state, path)
    return path


def test_another_released_folder_changes_the_tests_of_its_snapshots(tmp_path, capsys):
    """Two --released folders of the same layout, other bytes: the test of a snapshot recorded
    its SHA-256, so switching folders makes it changed."""
    first, second = (released_snapshot(tmp_path / name, value)
                     for name, value in (("first", 0.0), ("second", 1.0)))
    out = tmp_path / "out"
    argv = ["--table", "1", "--out", str(out), "--released"]
    (job,) = [job for job in jobs_for(TABLES["1"].settings(), Scale(out, released=tmp_path / "first"))
              if "test.checkpoint" in job.command]
    job.output.parent.mkdir(parents=True)
    job.output.write_text(json.dumps({"identity": identity.test_identity(
        composition(job).config, file_sha256(first), "auto")}))  # what test.py records
    assert reproduce.main([*argv, str(tmp_path / "first"), "--status"]) == 0
    assert f"[done] {job.name}: {job.output}" in capsys.readouterr().out
    assert reproduce.main([*argv, str(tmp_path / "second"), "--status"]) == 0
    assert (f"[changed] {job.name}: its output records other settings, data or code: "
            f"checkpoint_sha256: '{file_sha256(first)}' -> '{file_sha256(second)}'\n"
            in capsys.readouterr().out)
    assert reproduce.main([*argv, str(tmp_path / "second")], run=fail_if_run) == 2
    assert f"{job.name}: checkpoint_sha256: " in capsys.readouterr().err


def test_checkpoints_of_the_run_feed_the_figures_and_the_analysis(synthetic_table1, tmp_path):
    out, _ = synthetic_table1
    runs = out / "runs"
    one_shot = runs / "train-voc-fold0-1way-1shot-align" / "checkpoints" / "final.pt"
    path = save_qualitative(one_shot, tmp_path / "q.png", n_episodes=2)
    width, height = Image.open(path).size
    assert width == 3 * 65 + 2 * 4 and (height - 4) % 2 == 0 and (height - 4) // 2 > 65  # 2 rows
    curves = read_training_curves(runs / "train-voc-fold0-1way-1shot-align")
    assert curves["loss"][0] == [1] and set(curves) >= {"loss", "seg_loss", "align_loss", "lr"}

    five_shot = runs / "train-voc-fold0-1way-5shot-align" / "checkpoints" / "final.pt"
    measured = measure_prototype_distance(five_shot, 2, workers=0)
    assert measured.n_episodes == 2 and measured.n_foreground <= 2
    net, data = load_trained(five_shot)
    assert data.shots == 5 and not net.training
    with pytest.raises(ValueError, match=r"unknown data setting\(s\) \['shot'\]"):
        evaluation_episodes(data, 1, 0, shot=5)
