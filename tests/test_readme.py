"""Every command of the README (and of the guide pages of `GUIDES`), run as written, so that
none of them can silently break.

Commands are the lines of the README's code blocks, and its inline code spans, that start with
`python `, `torchrun ` or `make `. They run in README order in one scratch folder standing for
the root of a fresh clone: `data/synthetic` is a small generated set, `data/VOC2012` and
`data/COCO` the PASCAL-layout and COCO-layout halves of a smaller one (tests have no PASCAL or
COCO).
What runs, for each command (`runnable`):

- train.py / test.py / torchrun naming the real datasets (`voc`, `coco` named configs) need
  their images, ImageNet weights and a GPU: they run as `print_config` with the same arguments;
- other train.py / test.py commands run as written, then `TOY_UPDATES` (a 65 px input, no
  loader processes, 1 x 2 test episodes) and `train.steps=N` divided by `STEP_DIVISOR`;
- scripts run as written, then the scale flags of `TOY_FLAGS` where they have a scale;
  reproduce.py tables get `--dry-run` (test_reproduce.py runs a synthetic table end to end);
- `make test` is this suite and `make setup` the environment it runs in: not run; `make demo`
  runs what its target runs, `python scripts/demo.py`, with toy flags;
- commands of precision=bf16 runs (docs/precision.md) are skipped on a CPU without native
  bfloat16, where train.py and test.py refuse them (tests/test_precision.py runs bf16 anyway).

The Python blocks of the sections in `RUNNABLE_PYTHON` then run as written, after the commands
that make their files. (The API overview's block is a sketch with placeholder tensors.)
"""

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import List, Optional

import pytest

from conftest import REPO_ROOT
from panet.data import synthetic
from panet.device import cpu_has_native_bf16

README = REPO_ROOT / "README.md"
GUIDES = (REPO_ROOT / "docs" / "precision.md",)  # their commands run after the README's
PREFIXES = ("python ", "torchrun ", "make ")
REAL_DATASETS = {"voc", "coco"}
TOY_UPDATES = ["data.size=65", "data.workers=0", "test.runs=1", "test.episodes=2"]
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
RUN_ELSEWHERE = {"python scripts/check_gpu.py": "tests/test_check_gpu.py"}
RUNNABLE_PYTHON = ("## Your own images and data",)


def readme_commands(text: str) -> List[str]:
    """Command lines of the README's code blocks (indented or fenced) and inline code spans,
    without their comments, in order of appearance, each once. Spans with "..." are patterns
    (`python train.py ...`), not commands."""
    found = []
    in_fence = False
    for line in text.replace("\\\n", " ").splitlines():  # continuation lines joined
        if line.startswith("```"):
            in_fence = not in_fence
            continue
        stripped = line.strip()
        if (in_fence or line.startswith("    ")) and stripped.startswith(PREFIXES):
            found.append(stripped)
        elif not in_fence:
            found += [span for span in re.findall(r"`([^`]+)`", line)
                      if span.startswith(PREFIXES) and "..." not in span]
    return list(dict.fromkeys(" ".join(command.split(" #")[0].split()) for command in found))


def _scaled_steps(words: List[str]) -> List[str]:
    return [f"train.steps={max(1, int(w.split('=')[1]) // STEP_DIVISOR)}"
            if w.startswith("train.steps=") else w for w in words]


def runnable(command: str) -> Optional[List[str]]:
    """The argv this test runs for a README command (see the module docstring); None: not run."""
    if command in NOT_RUN or command in RUN_ELSEWHERE:
        return None
    words = shlex.split(command, comments=True)
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
        if REAL_DATASETS & set(arguments):
            if "print_config" not in arguments:
                arguments = ["print_config", *arguments]
            return [sys.executable, path, *arguments]
        return [*launcher, path, *_scaled_steps(arguments), *TOY_UPDATES]
    if Path(script).name == "reproduce.py" and "--table" in arguments:
        return [*launcher, path, *dict.fromkeys([*arguments, "--dry-run"])]
    return [*launcher, path, *arguments, *TOY_FLAGS.get(Path(script).name, [])]


def python_blocks(text: str, section: str) -> List[str]:
    """The fenced Python blocks of one README section."""
    start = text.index(section)
    end = text.find("\n## ", start + len(section))
    return re.findall(r"```python\n(.*?)```", text[start:end if end >= 0 else None], flags=re.S)


COMMANDS = list(dict.fromkeys(command for page in (README, *GUIDES)
                              for command in readme_commands(page.read_text())))


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


@pytest.mark.parametrize("section", RUNNABLE_PYTHON)
def test_readme_python_block_runs(clone, section):
    blocks = python_blocks(README.read_text(), section)
    assert blocks
    for block in blocks:
        result = subprocess.run([sys.executable, "-c", block], cwd=clone, capture_output=True,
                                text=True, timeout=600)
        assert result.returncode == 0, f"{block}\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
