"""The cross-domain benchmark end to end on generated data: reproduce.py --table cdfss (dry run
and toy scale), a test's episodes exported by scripts/episodes.py and evaluated again through
test.episodes_file, and the settings the reference protocols refuse."""

import json
import shutil

import numpy as np
import pytest

from panet.reproduce.jobs import TARGETS
from tests.conftest import load_script, run_repo_python

reproduce = load_script("reproduce")
episodes_script = load_script("episodes")
SMALLEST = ["--steps", "1", "--test-runs", "1", "--test-episodes", "3", "--size", "65"]


@pytest.fixture(scope="module")
def cdfss_table(synthetic_root, tmp_path_factory):
    """(out, data root) of the synthetic cross-domain table, on its own copy of the data."""
    out = tmp_path_factory.mktemp("cdfss")
    data = shutil.copytree(synthetic_root, out.parent / f"{out.name}-data")
    argv = ["--table", "cdfss", "--synthetic", "--data-root", str(data), "--out", str(out),
            *SMALLEST]
    assert reproduce.main(argv) == 0
    return out, data


def test_the_dry_run_lists_every_job_with_its_gpu_hours(tmp_path, capsys):
    argv = ["--table", "cdfss", "--dry-run", "--out", str(tmp_path / "out"), "--data-root",
            str(tmp_path / "absent")]
    assert reproduce.main(argv, run=pytest.fail) == 0
    out = capsys.readouterr().out
    jobs = [line for line in out.splitlines() if line.startswith("[pending")]
    assert len(jobs) == 2 + 2 * len(TARGETS)  # a model per shot count, tested on each target
    assert all("GPU h]" in line for line in jobs)
    for target in TARGETS:
        assert f"python test.py with {target} " in out
    assert "python train.py with cdfss 1way 1shot align" in out
    assert not (tmp_path / "out").exists()


def test_the_synthetic_table_is_written_beside_the_paper_row(cdfss_table):
    out, data = cdfss_table
    assert (data / "cdfss" / "FSS-1000" / "splits" / "test.txt").is_file()  # generated
    markdown = (out / "table_cdfss.md").read_text()
    assert (out / "table_cdfss.tex").is_file()
    header = next(line for line in markdown.splitlines() if line.startswith("| method"))
    assert header.count("-shot") == 2 * len(TARGETS) + 2  # per target, and the mean
    ours = next(line for line in markdown.splitlines() if line.startswith("| PANet (ours)"))
    assert "—" not in ours  # every cell measured
    assert "| PANet (paper) |" in markdown
    assert "cdfss_patnet_table1" in markdown
    result = json.loads((out / "runs" / "test-cdfss-1way-1shot-align-dense-deepglobe" /
                         "results.json").read_text())
    assert result["reference"]["protocol"] == "patnet"
    assert result["setting"]["seed"] == 0 and result["setting"]["rule"] == "corrected"


def test_exported_episodes_evaluate_to_identical_counts(cdfss_table, tmp_path):
    """A test, its episodes exported, and the same checkpoint tested on the exported file: the
    per-query counts are the same bits (both on the CPU: the same kernels on the same inputs)."""
    out, _ = cdfss_table
    config = json.loads((out / "runs" / "test-cdfss-1way-5shot-align-dense-isic2018" /
                         "results.json").read_text())["config"]

    def test(folder, *extra):
        run_repo_python("test.py", "with", "isic2018", f"data.root={config['data']['root']}",
                        f"data.size={config['data']['size']}", "device=cpu", "test.episodes=3",
                        f"test.checkpoint={config['test']['checkpoint']}",
                        f"test.output_dir={folder}", *extra)
        return np.load(folder / "episodes.npz")

    drawn = test(tmp_path / "drawn")
    exported = tmp_path / "episodes.csv"
    assert episodes_script.main([str(tmp_path / "drawn"), "--out", str(exported)]) == 0
    lines = exported.read_text().splitlines()
    assert lines[0] == "class,query,support_1,support_2,support_3,support_4,support_5"
    assert len(lines) == 1 + 3
    again = test(tmp_path / "again", f"test.episodes_file={exported}")
    assert drawn.files == again.files
    for key in drawn.files:
        assert np.array_equal(drawn[key], again[key]), key
