"""Every command of the README and of the guides in docs/, run as written, so that none of them
can silently break.

Commands are the lines of the pages' code blocks, and their inline code spans, that start with
`python `, `torchrun ` or `make `. They run in the order of `PAGES` (the README, then the guides
in the order a reader meets them), each command once, in one scratch folder standing for the
root of a fresh clone: `data/synthetic` is a small generated set, `data/VOC2012` and
`data/COCO` the PASCAL-layout and COCO-layout halves of a smaller one (tests have no PASCAL or
COCO), `data/snapshots` a snapshot of the authors' released code (random weights), `examples/`
a copy of the repository's (the methods of docs/your-own-method.md, imported from the folder a
command runs in), `results` the folder of PANet's tables (which their `--dry-run` leaves
unwritten) that `--also PANet=results` names.
What runs, for each command (`runnable`):

- train.py / test.py / torchrun naming the real datasets (`voc`, `coco`, `cdfss` named
  configs, or a cross-domain target's without `data.root=`) need their images, ImageNet
  weights and a GPU: they run as `print_config` with the same arguments;
- other train.py / test.py commands run as written, then the script's `TOY_UPDATES` (a 65 px
  input, no loader processes, 1 x 2 test episodes) and `train.steps=N` divided by
  `STEP_DIVISOR`;
- scripts run as written, then the scale flags of `TOY_FLAGS` where they have a scale;
  reproduce.py tables get `--dry-run` (not `--status`, which only reads; test_reproduce.py
  runs a synthetic table end to end);
- `make test` is this suite and `make setup` the environment it runs in: not run; `make demo`
  runs what its target runs, `python scripts/demo.py`, with toy flags;
- commands of precision=bf16 runs (docs/precision.md) are skipped on a CPU without native
  bfloat16, where train.py and test.py refuse them (tests/test_precision.py runs bf16 anyway).

The Python blocks of the pages in `RUNNABLE_PYTHON` then run as written, after the commands
that make their files.
"""

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import List, Optional

import pytest
import torch

from conftest import REPO_ROOT
from panet.data import synthetic
from panet.base.device import cpu_has_native_bf16
from panet.models import PANet, vgg16_encoder
from panet.weights.released import panet_to_released

README = REPO_ROOT / "README.md"
PAGES = [README] + [REPO_ROOT / "docs" / f"{name}.md" for name in (
    "training-and-testing", "data", "reproducing", "cluster", "reporting", "own-data", "api",
    "performance", "precision", "your-own-method", "paper-vs-released", "cross-domain",
    "development", "PROTOCOL")]
# a command may start with environment variables: `VAR=value python ...`
COMMAND_START = re.compile(r"(?:[A-Z][A-Z0-9_]*=\S+ +)*(?:python|torchrun|make) ")
ASSIGNMENT = re.compile(r"[A-Z][A-Z0-9_]*=")
REAL_DATASETS = {"voc", "coco", "cdfss"}
TARGETS = {"deepglobe", "isic2018", "chestxray", "fss1000"}  # real unless data.root= is given
TOY_UPDATES = {"train.py": ["data.size=65", "data.workers=0"],
               "test.py": ["data.size=65", "data.workers=0", "test.runs=1", "test.episodes=2"]}
STEP_DIVISOR = 100
TOY_FLAGS = {
    "demo.py": ["--steps", "2", "--episodes", "2"],
    "make_synthetic.py": ["--size", "96", "128"],
    "bench_model.py": ["--size", "33", "--repeats", "1", "--shots", "1"],
    "bench_data.py": ["--episodes", "4", "--voc-root", "data/VOC2012"],
    "bench_predict.py": ["--queries", "2", "--repeats", "1"],
    "bench_eval.py": ["--episodes", "2", "--repeats", "1", "--folds", "0", "--settings", "1x1",
                      "--encoder", "small", "--size", "101", "--shots", "1", "--root",
                      "data/synthetic"],
}
NOT_RUN = {"make test", "make setup"}
PLACEHOLDER = re.compile(r"<[a-z][a-z ]*>")  # `<run folder>`, not a shell redirection
RUN_ELSEWHERE = {"python scripts/check_gpu.py": "tests/test_check_gpu.py"}
RUNNABLE_PYTHON = (REPO_ROOT / "docs" / "own-data.md", REPO_ROOT / "docs" / "api.md")


def readme_commands(text: str) -> List[str]:
    """Command lines of a page's code blocks (indented or fenced) and inline code spans,
    without their comments, in order of appearance, each once. Lines with "..." or a
    `<placeholder>` are patterns (`python train.py ...`), not commands."""
    found = []
    in_fence = False
    for line in text.replace("\\\n", " ").splitlines():  # continuation lines joined
        if line.startswith("```"):
            in_fence = not in_fence
            continue
        stripped = line.strip()
        if (in_fence or line.startswith("    ")) and COMMAND_START.match(stripped):
            found.append(stripped)
        elif not in_fence:
            found += [span for span in re.findall(r"`([^`]+)`", line)
                      if COMMAND_START.match(span)]
    commands = (" ".join(command.split(" #")[0].split()) for command in found)
    return list(dict.fromkeys(command for command in commands
                              if "..." not in command and not PLACEHOLDER.search(command)))


def _scaled_steps(words: List[str]) -> List[str]:
    return [f"train.steps={max(1, int(w.split('=')[1]) // STEP_DIVISOR)}"
            if w.startswith("train.steps=") else w for w in words]


def runnable(command: str) -> Optional[List[str]]:
    """The argv this test runs for a README command (see the module docstring); None: not run.
    Leading `VAR=value` words are passed on through `env`."""
    if command in NOT_RUN or command in RUN_ELSEWHERE:
        return None
    words = shlex.split(command, comments=True)
    n_assignments = next(i for i, word in enumerate(words) if not ASSIGNMENT.match(word))
    if n_assignments:
        argv = runnable(shlex.join(words[n_assignments:]))
        return None if argv is None else ["env", *words[:n_assignments], *argv]
    if words[:2] == ["make", "demo"]:
        words = ["python", "scripts/demo.py"]
    if words[0] == "torchrun":
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                    *[w for w in words[1:] if w.startswith("--")]]
        words = ["python", *[w for w in words[1:] if not w.startswith("--")]]
    else:
        launcher = [sys.executable]
    script, arguments = words[1], words[2:]
    path = str(REPO_ROOT / script)
    if Path(script).name in ("train.py", "test.py"):
        real_target = TARGETS & set(arguments) and not any(
            a.startswith("data.root=") for a in arguments)
        if REAL_DATASETS & set(arguments) or real_target:
            if "print_config" not in arguments:
                arguments = ["print_config", *arguments]
            return [sys.executable, path, *arguments]
        toy = TOY_UPDATES[Path(script).name]
        return [*launcher, path, *_scaled_steps(arguments),
                *(toy if "with" in arguments else ["with", *toy])]
    if (Path(script).name == "reproduce.py" and "--table" in arguments
            and "--status" not in arguments):  # --status only reads
        return [*launcher, path, *dict.fromkeys([*arguments, "--dry-run"])]
    return [*launcher, path, *arguments, *TOY_FLAGS.get(Path(script).name, [])]


def python_blocks(text: str) -> List[str]:
    """The fenced Python blocks of a page."""
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


COMMANDS = list(dict.fromkeys(command for page in PAGES if page.is_file()
                              for command in readme_commands(page.read_text())))


def test_every_guide_is_a_page_whose_commands_run():
    """A new page of docs/ must be listed in PAGES (so that its commands run), and the README
    links to every guide: any command is two clicks from it."""
    guides = set((REPO_ROOT / "docs").glob("*.md"))
    assert guides <= set(PAGES), sorted(str(p) for p in guides - set(PAGES))
    readme = README.read_text()
    for guide in sorted(guides - {REPO_ROOT / "docs" / "PROTOCOL.md"}):
        assert f"](docs/{guide.name})" in readme, guide.name


def test_the_readme_opens_with_the_two_fresh_machine_commands():
    first_block = [line.strip() for line in README.read_text().splitlines()[1:5] if line.strip()]
    assert [line.split("#")[0].strip() for line in first_block] == ["make demo", "make test"]


def test_every_readme_command_is_either_run_or_said_not_to_be():
    assert len(COMMANDS) >= 15
    assert all(runnable(c) is not None or c in NOT_RUN or c in RUN_ELSEWHERE for c in COMMANDS)


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Path:
    """The scratch folder the commands run from (see the module docstring)."""
    root = tmp_path_factory.mktemp("clone")
    data = root / "data"
    # as many images as the demo's 5-shot tests need on the val split; PASCAL and COCO stand-ins
    # smaller, for the scripts that read every mask
    synthetic.generate(data / "synthetic", n_images=400, size=(96, 128), seed=5)
    stand_in = synthetic.generate(root / "stand-in", n_images=60, size=(96, 128), seed=6,
                                  coco=True)
    shutil.move(stand_in / synthetic.VOC_DIR, data / "VOC2012")
    shutil.move(stand_in / synthetic.COCO_DIR, data / "COCO")
    snapshot = (data / "snapshots" / "PANet_VOC_align_sets_0_1way_5shot_[train]" / "1"
                / "snapshots" / "30000.pth")
    snapshot.parent.mkdir(parents=True)
    torch.save(panet_to_released(PANet(vgg16_encoder()).state_dict()), snapshot)
    shutil.copytree(REPO_ROOT / "examples", root / "examples",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (root / "results").mkdir()
    return root


@pytest.mark.parametrize("command", COMMANDS)
def test_readme_command_runs(clone, command):
    argv = runnable(command)
    if command in RUN_ELSEWHERE:
        pytest.skip(f"{command!r} is run by {RUN_ELSEWHERE[command]}")
    if argv is None:
        pytest.skip(f"{command!r}: {'this test suite' if 'test' in command else 'the setup'}")
    if "bf16" in command and not cpu_has_native_bf16():
        pytest.skip(f"{command!r}: bf16 is refused on this CPU (no native bfloat16)")
    result = subprocess.run(argv, cwd=clone, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, (f"{command}\nran as: {shlex.join(argv)}\n"
                                    f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")


@pytest.mark.parametrize("page", RUNNABLE_PYTHON, ids=lambda page: page.name)
def test_readme_python_block_runs(clone, page):
    blocks = python_blocks(page.read_text())
    assert blocks
    for block in blocks:
        result = subprocess.run([sys.executable, "-c", block], cwd=clone, capture_output=True,
                                text=True, timeout=600)
        assert result.returncode == 0, f"{block}\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
