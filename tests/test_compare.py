"""scripts/compare.py on hand-made tests (results.json + episodes.npz, no model run): it refuses
tests whose protocols differ, naming each setting, sides that are not one method over distinct
training seeds, and one model on both sides unless the sides differ in their numerics only (a
comparison of numerics, labelled so); it compares several tests per side; it writes JSON,
Markdown and LaTeX with each side's numerics and each test's provenance."""

import copy
import json
import shutil
import subprocess

import numpy as np
import pytest

from conftest import load_script
from panet.report.render import Measured, Number, Report, write_report
from panet.report.statistics import EpisodeRecords
from panet.run.identity import PROTOCOL_KEYS
from panet.settings import EpisodeSetting
from test_statistics import naive_mean_iou, record_rows

COMPARE = load_script("compare")
CLASSES = [1, 2, 1]  # the class of each episode of both runs
# the protocol keys the comparison must check (the dataset, split, fold, episode shape, weak
# supports, size, metric resolution and rule, runs, episodes and their seed)
NAMED = ("data.name", "data.test_split", "data.fold", "data.ways", "data.shots", "data.queries",
         "data.weak", "data.size", "test.resolution", "test.rule", "test.runs", "test.episodes",
         "seed")


def episode_counts(tp_fg):
    return [[[60, 4, 4], [tp, 10, 6]] for tp in tp_fg]


def setting_path(key):
    """Where results.json's "setting" holds a protocol key: data.* in its data, test.* and seed
    at its top level."""
    section, _, name = key.rpartition(".")
    return (section, name) if section == "data" else (name,)


def write_test(folder, tp_fg=(30, 20, 12), training_seed=1234, sha=None, training=None,
               model_sha=None, identity=None, **changes):
    """A test folder of one trained model: 2 runs x 3 episodes (the same counts in both runs).
    `training`: entries of its training fingerprint replaced; `model_sha`: the evaluated model's
    digest (None: a record from before it); `identity`: results.json's identity; `changes`:
    setting entries replaced or added, by results.json path ("data.weak", "precision", ...)."""
    folder.mkdir(parents=True)
    rows = [row for run in range(2) for row in record_rows(
        [np.array(c) for c in episode_counts(tp_fg)], CLASSES, run=run)]
    EpisodeRecords.from_rows(rows).save(folder / "episodes.npz")
    data = {**EpisodeSetting(name="synthetic", root="data/synthetic").as_config(),
            "train_split": "trainaug", "test_split": "val"}
    setting = {"data": data, "seed": 1234, "runs": 2, "episodes": 3, "rule": "released",
               "resolution": "label", "notrain": False, "encode": "image", "encode_used": "image",
               "encode_why": None,
               "model": {"encoder": "small", "weights": None, "alpha": 20.0,
                         "factory": "panet.models:PANet"},
               "checkpoint": f"runs/{folder.name}/checkpoints/final.pt",
               "checkpoint_sha256": sha or f"{folder.name:0>64}", "trained_steps": 300,
               "training_seed": training_seed,
               "training": {"seed": training_seed, "train.lr": 0.001, "train.steps": 300,
                            "model.factory": "panet.models:PANet", "data.root": "data/synthetic",
                            **(training or {})}}
    for path, value in changes.items():
        *parents, name = path.split(".")
        node = setting
        for parent in parents:
            node = node[parent]
        node[name] = value
    record = {"class_iou": {"1": 0.5, "2": 0.5}, "setting": setting,
              "code": {"commit": "0123456789abcdef", "dirty": False}, "config": {}}
    if model_sha is not None:
        record["model"] = {"model_sha256": model_sha, "factory": "panet.models:PANet",
                           "method_sha256": None}
    if identity is not None:
        record["identity"] = identity
    (folder / "results.json").write_text(json.dumps(record))
    return folder


def other_value(value):
    if isinstance(value, bool) or value is None:
        return [3, 4] if value is None else not value
    if isinstance(value, (int, float)):
        return value + 1
    return f"{value}-other"


def test_every_named_protocol_key_is_checked():
    assert set(NAMED) <= set(PROTOCOL_KEYS)


@pytest.mark.parametrize("key", [key for key in PROTOCOL_KEYS if key != "data.fold"])
def test_tests_of_another_protocol_are_refused_naming_the_setting(tmp_path, capsys, key):
    """(Other folds make a comparison over folds: test_a_comparison_over_folds_...)"""
    a = write_test(tmp_path / "a")
    where = ".".join(setting_path(key))
    node = json.loads((a / "results.json").read_text())["setting"]
    for part in setting_path(key):
        node = node[part]
    b = write_test(tmp_path / "b", **{where: other_value(node)})
    assert COMPARE.main([str(a), str(b)]) == 2
    err = capsys.readouterr().err
    assert f"{key}: {node!r} (A1), {other_value(node)!r} (B1)" in err, err
    assert err.count("the protocols differ") == 1  # that key only


def test_each_differing_setting_is_named(tmp_path, capsys):
    a = write_test(tmp_path / "a")
    b = write_test(tmp_path / "b", **{"data.weak": "bbox", "data.size": 97,
                                      "resolution": "original"})
    assert COMPARE.main([str(a), "--vs", str(b), str(write_test(tmp_path / "b2",
                                                                training_seed=1235))]) == 2
    err = capsys.readouterr().err
    for said in ("data.weak: 'dense' (A1, B2), 'bbox' (B1)", "data.size: 417 (A1, B2), 97 (B1)",
                 "test.resolution: 'label' (A1, B2), 'original' (B1)"):
        assert said in err


def test_a_side_holds_one_method_over_distinct_training_seeds(tmp_path, capsys):
    b = write_test(tmp_path / "b")
    cases = [
        ({"sha": "1" * 64}, {"sha": "1" * 64, "training_seed": 1235},
         "test the same trained model"),
        ({}, {}, "models trained with the same seed (1234)"),
        ({}, {"training_seed": 1235, "training": {"train.lr": 0.01}},
         "differ in train.lr (only the training seed may): 0.001 (A1), 0.01 (A2)"),
        ({}, {"training_seed": 1235, "model.alpha": 10.0}, "differ in their model settings"),
    ]
    for index, (first, second, said) in enumerate(cases):
        a1 = write_test(tmp_path / f"a{index}-1", **first)
        a2 = write_test(tmp_path / f"a{index}-2", **second)
        assert COMPARE.main([str(a1), str(a2), "--vs", str(b)]) == 2
        assert said in capsys.readouterr().err


def test_the_model_and_its_training_may_differ_between_sides(tmp_path, capsys):
    a = write_test(tmp_path / "a", **{"model.factory": "examples.temperature:TemperaturePANet",
                                      "training": {"train.steps": 600}, "trained_steps": 600})
    assert COMPARE.main([str(a), str(write_test(tmp_path / "b")), "--resamples", "50"]) == 0
    out = capsys.readouterr().out
    assert "test episodes only" in out and "does not cover training randomness" in out


def test_several_seeds_per_side_in_json_markdown_and_latex(tmp_path, capsys):
    a_tps, b_tps = [(30, 20, 12), (25, 28, 10)], [(15, 15, 15), (20, 9, 14), (18, 12, 30)]
    a = [write_test(tmp_path / f"a{i}", tp, 1234 + i) for i, tp in enumerate(a_tps)]
    b = [write_test(tmp_path / f"b{i}", tp, 1234 + i,
                    **{"model.factory": "examples.temperature:TemperaturePANet"})
         for i, tp in enumerate(b_tps)]
    out = {name: tmp_path / f"compare.{name[:3]}" for name in ("json", "markdown", "latex")}
    assert COMPARE.main([*map(str, a), "--vs", *map(str, b), "--resamples", "200",
                         *(x for name, path in out.items() for x in (f"--{name}", str(path)))]
                        ) == 0
    printed = capsys.readouterr().out
    document = json.loads(out["json"].read_text())
    everything = range(3)
    a_values = [naive_mean_iou(episode_counts(tp), CLASSES, everything) for tp in a_tps]
    b_values = [naive_mean_iou(episode_counts(tp), CLASSES, everything) for tp in b_tps]
    overall = document["comparison"]["overall"]["mean_iou"]
    assert overall["a_models"] == pytest.approx(a_values)
    assert overall["difference"] == pytest.approx(np.mean(a_values) - np.mean(b_values))
    assert overall["ci"][0] <= overall["difference"] <= overall["ci"][1]
    assert [side["training_seed"] for side in document["a"]] == [1234, 1235]
    assert document["b"][0]["factory"] == "examples.temperature:TemperaturePANet"
    assert document["a"][1]["code"]["commit"] == "0123456789abcdef"
    assert document["a"][0]["checkpoint_sha256"].endswith("a0")
    assert "covers training seeds and test episodes" in document["interval_covers"]

    markdown = out["markdown"].read_text()
    assert markdown == printed  # also printed, as no output went to standard output
    assert markdown.startswith("# A vs B\n")
    mean = 100 * np.mean(a_values)
    std = 100 * np.std(a_values, ddof=1)
    assert f"| mean-IoU | {mean:.1f} ± {std:.1f} |" in markdown
    for said in ("| binary-IoU |", "|   run 1 |", "| class 2 |", "2 trained models (training "
                 "seeds 1234, 1235)", "examples.temperature:TemperaturePANet, 3 trained models",
                 "- B3: ", "covers training seeds and test episodes"):
        assert said in markdown, said
    latex = out["latex"].read_text()
    assert latex.startswith("% A vs B -- written by panet-repro's scripts/compare.py\n")
    assert r"\begin{tabular}{lrrrrrr}" in latex and r"95\% interval" in latex
    assert f"mean-IoU & ${mean:.1f} \\pm {std:.1f}$ &" in latex

    assert COMPARE.main([*map(str, a), "--vs", *map(str, b), "--resamples", "200",
                         "--json", "-"]) == 0
    assert json.loads(capsys.readouterr().out)["comparison"] == document["comparison"]


def test_two_tests_without_vs_or_more_than_two(tmp_path, capsys):
    tests = [str(write_test(tmp_path / f"t{i}", training_seed=1234 + i)) for i in range(3)]
    with pytest.raises(SystemExit) as stop:
        COMPARE.main(tests)
    assert stop.value.code == 2 and "give two tests (A B)" in capsys.readouterr().err
    assert COMPARE.main([tests[0], str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err
    assert f"B1 {tmp_path / 'none'}: no results.json" in err


def test_old_results_without_records_are_refused(tmp_path, capsys):
    a = write_test(tmp_path / "a")
    b = write_test(tmp_path / "b")
    (b / "episodes.npz").unlink()
    assert COMPARE.main([str(a), str(b)]) == 2
    assert "no episodes.npz beside it" in capsys.readouterr().err
    (b / "episodes.npz").write_bytes(b"")  # a zero-byte file (a full disk, a killed copy)
    assert COMPARE.main([str(a), str(b)]) == 2
    err = capsys.readouterr().err
    assert "episodes.npz is not an episode-records file of test.py (empty)" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    broken = copy.deepcopy(json.loads((a / "results.json").read_text()))
    del broken["setting"]
    (b / "results.json").write_text(json.dumps(broken))
    assert COMPARE.main([str(a), str(b / "results.json")]) == 2
    assert "not a results.json of test.py" in capsys.readouterr().err


def test_the_recorded_identity_gives_the_protocol(tmp_path, capsys):
    """A results.json holding its identity: the protocol is read from its settings fingerprint."""
    a = write_test(tmp_path / "a", identity={"settings": {"data.shots": 1, "test.runs": 2}})
    b = write_test(tmp_path / "b", identity={"settings": {"data.shots": 5, "test.runs": 2}})
    assert COMPARE.main([str(a), str(b)]) == 2
    err = capsys.readouterr().err
    assert "data.shots: 1 (A1), 5 (B1)" in err and "test.runs" not in err


# ---- the same model on both sides: refused, unless a comparison of numerics ----------------

def test_one_checkpoint_in_fp32_and_bf16_compares_numerics_naming_both(tmp_path, capsys):
    a = write_test(tmp_path / "a", sha="1" * 64, precision="bf16", tp_fg=(29, 21, 12))
    b = write_test(tmp_path / "b", sha="1" * 64, precision="fp32")
    out = {name: tmp_path / f"compare.{name[:3]}" for name in ("json", "markdown", "latex")}
    assert COMPARE.main([str(a), str(b), "--resamples", "50",
                         *(x for name, path in out.items() for x in (f"--{name}", str(path)))]
                        ) == 0
    document = json.loads(out["json"].read_text())
    assert document["compares"] == "numerics"
    assert document["numerics"] == {"a": "bf16, contiguous, image path",
                                    "b": "fp32, contiguous, image path"}
    assert document["a"][0]["numerics"]["precision"] == "bf16"
    markdown = out["markdown"].read_text()
    assert markdown.startswith("# A vs B: numerics (bf16, contiguous, image path vs fp32, "
                               "contiguous, image path)\n")
    for said in ("- a comparison of numerics: the same model(s) on both sides, A in bf16",
                 "- A: panet.models:PANet, one trained model (training seed 1234); bf16, "
                 "contiguous, image path", "B in fp32, contiguous, image path",
                 "tested at commit 0123456789ab in fp32, contiguous, image path"):
        assert said in markdown, said
    latex = out["latex"].read_text()
    assert r"\caption{A vs B: numerics (bf16, contiguous, image path vs fp32" in latex


def test_two_models_are_a_comparison_of_models_naming_each_sides_numerics(tmp_path, capsys):
    a = write_test(tmp_path / "a", precision="bf16")
    assert COMPARE.main([str(a), str(write_test(tmp_path / "b")), "--resamples", "20",
                         "--json", "-"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["compares"] == "models"
    assert document["numerics"]["a"].startswith("bf16")


def test_the_same_model_in_the_same_numerics_on_both_sides_is_refused(tmp_path, capsys):
    """Equal model digests: the same model, whatever the checkpoint files; with the same numerics
    there is nothing to compare."""
    a = write_test(tmp_path / "a", model_sha="2" * 64)
    b = write_test(tmp_path / "b", model_sha="2" * 64, training_seed=1235)
    assert COMPARE.main([str(a), str(b)]) == 2
    err = capsys.readouterr().err
    assert ("A1 and B1 test the same model: both sides compute in fp32, contiguous, image path"
            in err)


def test_numerics_need_every_model_on_both_sides_and_one_numerics_a_side(tmp_path, capsys):
    a1 = write_test(tmp_path / "a1", sha="1" * 64, precision="bf16")
    a2 = write_test(tmp_path / "a2", training_seed=1235, precision="fp32")
    b1 = write_test(tmp_path / "b1", sha="1" * 64, precision="fp32")
    assert COMPARE.main([str(a1), str(a2), "--vs", str(b1)]) == 2
    assert ("A1 and B1 test the same model: only a comparison of numerics may"
            in capsys.readouterr().err)
    b2 = write_test(tmp_path / "b2", sha=f"{'a2':0>64}", training_seed=1235, precision="bf16")
    assert COMPARE.main([str(a1), str(a2), "--vs", str(b1), str(b2)]) == 2
    err = capsys.readouterr().err
    assert ("a comparison of numerics needs one numerics per side (A: bf16, contiguous, image "
            "path (A1), fp32, contiguous, image path (A2)" in err)


def test_a_side_with_the_same_model_twice_is_refused(tmp_path, capsys):
    """Two checkpoint files of one model (equal model digests) within a side, even in other
    numerics."""
    a1 = write_test(tmp_path / "a1", model_sha="3" * 64)
    a2 = write_test(tmp_path / "a2", model_sha="3" * 64, training_seed=1235, precision="bf16")
    assert COMPARE.main([str(a1), str(a2), "--vs", str(write_test(tmp_path / "b"))]) == 2
    assert "A1 and A2 test the same trained model" in capsys.readouterr().err


def test_a_comparison_over_folds_gives_each_fold_and_the_mean_over_folds(tmp_path, capsys):
    """Two folds, two seeds per side in each, named sides: each fold's row is that fold's own
    comparison, the mean over folds the mean of the folds' differences; a fold without one
    side, or folds differing beyond the fold, are refused."""
    tests = {(side, fold, seed): write_test(
        tmp_path / f"{side}{fold}-{seed}", tp, seed, sha=f"{side}{fold}{seed}".ljust(64, "0"),
        **{"data.fold": fold})
        for side, tps in (("a", [(30, 20, 12), (25, 28, 10)]), ("b", [(15, 15, 15), (9, 9, 9)]))
        for fold in (0, 1) for seed, tp in zip((1234, 1235), tps)}
    a = [str(path) for (side, _, _), path in tests.items() if side == "a"]
    b = [str(path) for (side, _, _), path in tests.items() if side == "b"]
    out = tmp_path / "folds.json"
    assert COMPARE.main([*a, "--vs", *b, "--names", "Ours", "PANet", "--resamples", "200",
                         "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Ours vs PANet over folds" in printed and "| Ours - PANet |" in printed
    assert "mean-IoU, fold 0" in printed and "mean-IoU, mean over 2 folds" in printed
    assert "2 trained models (training seeds 1234, 1235) per fold, over 2 folds" in printed
    document = json.loads(out.read_text())
    for fold in (0, 1):  # each fold's row: that fold's comparison alone
        single = tmp_path / f"fold{fold}.json"
        assert COMPARE.main([*(p for p in a if f"/a{fold}-" in p), "--vs",
                             *(p for p in b if f"/b{fold}-" in p), "--resamples", "200",
                             "--json", str(single)]) == 0
        alone = json.loads(single.read_text())["comparison"]["overall"]["mean_iou"]
        assert document["folds"][str(fold)]["overall"]["mean_iou"] == alone
    differences = [document["folds"][str(f)]["overall"]["mean_iou"]["difference"] for f in (0, 1)]
    assert document["mean_over_folds"]["mean_iou"]["difference"] == pytest.approx(
        sum(differences) / 2)
    capsys.readouterr()
    assert COMPARE.main([*a, "--vs", *b[:2]]) == 2
    assert "fold 1 has no test of B" in capsys.readouterr().err
    other = write_test(tmp_path / "other", (9, 9, 9), 1236, **{"data.fold": 1,
                                                                 "data.shots": 5})
    assert COMPARE.main([*a, "--vs", *b, str(other)]) == 2
    assert "differ beyond the fold: data.shots" in capsys.readouterr().err


def test_the_latex_tables_compile_with_pdflatex(tmp_path, capsys):
    """A comparison's LaTeX and a table's (full and compact: special characters, missing
    cells, signed numbers, intervals) compile in an article with booktabs; the caption says no
    "Table N" (LaTeX numbers it) and the notes are comments outside the table."""
    pdflatex = shutil.which("pdflatex")
    if pdflatex is None:
        pytest.skip("pdflatex is not installed (make test installs Debian's TeX Live)")
    a = write_test(tmp_path / "a", (30, 20, 12))
    b = write_test(tmp_path / "b", (15, 15, 15), **{"model.factory": "examples.x:Y_z"})
    compared = tmp_path / "compare.tex"
    assert COMPARE.main([str(a), str(b), "--resamples", "50", "--latex", str(compared)]) == 0
    report = Report("Table 5: PAR ablation, 1-way & 5-shot (50% of runs_done)",
                    ["method", "mean-IoU 1-shot", "5-shot"],
                    [["PANet w/o PAR (ours)", Measured(47.1, 0.4, (46.5, 47.6)), Measured(None)],
                     ["difference (ours - paper)", Number(-1.2, signed=True), Number(None)]],
                    notes=["commit 0123abc; 100% toy", "cite: [low, high] $x$ ~ {y}"],
                    commands=["python train.py with voc noalign data.fold=0"])
    stem = tmp_path / "table5"
    write_report(report, stem)
    for tex in (compared, stem.parent / "table5.tex", stem.parent / "table5-compact.tex"):
        text = tex.read_text()
        assert r"\label{tab:" in text and r"\caption{Table" not in text
        assert "%" not in text[text.index(r"\begin{table}"):].replace(r"\%", "")
        document = tmp_path / f"{tex.stem}-doc.tex"
        document.write_text("\\documentclass{article}\n\\usepackage{booktabs}\n"
                            f"\\begin{{document}}\n\\input{{{tex}}}\n\\end{{document}}\n")
        built = subprocess.run([pdflatex, "-interaction=nonstopmode", "-halt-on-error",
                                document.name], cwd=tmp_path, capture_output=True, text=True,
                               timeout=120)
        assert built.returncode == 0, built.stdout[-2000:]
    assert "[46.5, 47.6]" in (stem.parent / "table5.tex").read_text()
    assert "[46.5, 47.6]" not in (stem.parent / "table5-compact.tex").read_text()
