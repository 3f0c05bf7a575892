"""Claims of the guides that code can check, so that they stay true.

tests/test_readme.py runs every command of the README and of docs/, and the fenced Python
blocks of the pages in its `RUNNABLE_PYTHON`; this file reuses its block reader
(`python_blocks`) for the pages outside that list (`MORE_RUNNABLE_PYTHON`: data/README.md), and
checks that no page holds a Python block neither of them runs. It also holds lists and numbers
the guides copy from the code to the code: the keys a resume may change, the checkpoint
intervals, the signature data/README.md shows, compare.py's options in docs/reporting.md, the
tests the guides name, and the shape of docs/development.md's table of bad inputs.
"""

import inspect
import re
import subprocess
import sys
from pathlib import Path

from conftest import REPO_ROOT
from test_readme import RUNNABLE_PYTHON, python_blocks

from panet.data import make_episode_dataset
from panet.run.validation import RESUMABLE
from panet.settings import TrainSettings

DOCS = REPO_ROOT / "docs"
DATA_README = REPO_ROOT / "data" / "README.md"
MORE_RUNNABLE_PYTHON = (DATA_README,)
PAGES = [REPO_ROOT / "README.md", DATA_README, REPO_ROOT / "tests" / "README.md",
         *sorted(DOCS.glob("*.md"))]
TEST_REFERENCE = re.compile(r"(?:tests/)?(test_\w+\.py)::(\w+)")


def read(page: Path) -> str:
    return page.read_text()


def test_every_python_block_of_the_pages_is_run():
    """A page with a fenced Python block is run by test_readme.py or by this file."""
    run = {*RUNNABLE_PYTHON, *MORE_RUNNABLE_PYTHON}
    with_blocks = {page for page in PAGES if python_blocks(read(page))}
    assert with_blocks <= run, sorted(str(page) for page in with_blocks - run)


def test_the_python_blocks_of_data_readme_run_as_written(synthetic_root, tmp_path):
    """Run from a folder standing for the repository root, `data/synthetic` the generated set."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "synthetic").symlink_to(synthetic_root)
    for page in MORE_RUNNABLE_PYTHON:
        blocks = python_blocks(read(page))
        assert blocks, page
        for block in blocks:
            result = subprocess.run([sys.executable, "-c", block], cwd=tmp_path,
                                    capture_output=True, text=True, timeout=600)
            assert result.returncode == 0, f"{page}\n{block}\n{result.stderr[-3000:]}"


def test_data_readme_shows_make_episode_datasets_signature():
    text = " ".join(read(DATA_README).split())
    shown = re.search(r"`make_episode_dataset\((.*?)\)`", text)
    assert shown, "data/README.md names make_episode_dataset's parameters"
    signature = inspect.signature(make_episode_dataset)
    expected = []
    for parameter in signature.parameters.values():
        if parameter.kind is parameter.KEYWORD_ONLY and "*" not in expected:
            expected.append("*")
        default = "" if parameter.default is parameter.empty else f"={parameter.default!r}"
        expected.append(parameter.name + default)
    assert [word.strip() for word in shown.group(1).split(",")] == expected


def test_the_keys_a_resume_may_change_are_the_codes():
    """docs/training-and-testing.md lists `RESUMABLE` (panet/run/validation.py) key by key."""
    text = " ".join(read(DOCS / "training-and-testing.md").split())
    listed = re.search(r"`RESUMABLE` in `panet/run/validation.py`: (.*?) \(where the data is",
                       text)
    assert listed, "the Resuming paragraph names RESUMABLE and lists its keys"
    keys = re.findall(r"`([a-z_.0-9]+)`", listed.group(1))
    assert keys == list(RESUMABLE)


def test_the_checkpoint_intervals_of_the_guide_are_the_defaults():
    text = " ".join(read(DOCS / "training-and-testing.md").split())
    defaults = TrainSettings()
    assert f"`train.checkpoint_every` steps (default {defaults.checkpoint_every:,})" in text
    assert f"`train.snapshot_every` steps (default {defaults.snapshot_every:,}; 0: none)" in text


def test_reporting_names_every_option_of_compare_py():
    """docs/reporting.md names each option of `compare.py --help` (--names, --vs, ...)."""
    text = read(DOCS / "reporting.md")
    usage = subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "compare.py"), "--help"],
                           capture_output=True, text=True, timeout=120, check=True).stdout
    options = set(re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", usage)) - {"--help"}
    assert {"--vs", "--names", "--resamples", "--json", "--markdown", "--latex"} <= options
    missing = sorted(option for option in options
                     if not re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", text))
    assert not missing, missing
    assert "`--resamples`, default 10,000" in text and "default=10000" in read(
        REPO_ROOT / "scripts" / "compare.py")


def test_every_test_the_guides_name_exists():
    for page in PAGES:
        for file, name in TEST_REFERENCE.findall(read(page)):
            path = REPO_ROOT / "tests" / file
            assert path.is_file(), (page.name, file)
            assert re.search(rf"^def {name}\(", read(path), flags=re.M), (page.name, file, name)


ENTRY_POINTS = ["train.py", "test.py", "scripts/predict.py", "scripts/reproduce.py",
                "scripts/prepare_voc.py", "scripts/prepare_folder.py", "scripts/compare.py"]
BAD_INPUTS = ["missing data.root", "wrong layout", "corrupt image", "out-of-range config value",
              "interrupted run / resume", "checkpoint from elsewhere", "full disk"]


def test_the_table_of_bad_inputs_has_each_pair_once():
    """docs/development.md: a row per entry point and bad input, in order, each either naming
    a test or saying "not covered" or "n/a"."""
    text = read(DOCS / "development.md")
    section = text.split("### Bad input, by entry point", 1)[1]
    rows = [line.split(" | ") for line in section.splitlines()
            if line.startswith("| ") and not line.startswith(("| entry point", "|---"))]
    assert [(row[0].lstrip("| "), row[1]) for row in rows] == [
        (entry, bad) for entry in ENTRY_POINTS for bad in BAD_INPUTS]
    for row in rows:
        cells = " | ".join(row[2:])
        assert TEST_REFERENCE.search(cells) or "not covered" in cells or "n/a" in cells, row
