"""The README's "Your own images and data" section, run as written at toy scale.

The section's shell block runs line by line in bash in a copy of the repository (its outputs
land there), with ``python`` the running interpreter and this checkout's ``panet`` imported. Toy
scale only appends arguments: a small generated dataset, and the `fast` named config (small
encoder, 4 steps, 65 x 65) for train.py and test.py. The Python block then runs as written.
"""

import os
import re
import shutil
import subprocess
import sys

from conftest import REPO_ROOT

SECTION = "## Your own images and data"
TOY_ARGS = {"scripts/make_synthetic.py": "--n-images 60 --size 120 160",
            "train.py": "fast", "test.py": "fast"}
NOT_COPIED = {".git", ".venv", "runs", "data", ".pytest_cache", "predictions"}


def section_blocks(language):
    """The code blocks of ``language`` in the README section."""
    text = (REPO_ROOT / "README.md").read_text()
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    section = text[start:end if end >= 0 else None]
    return re.findall(rf"```{language}\n(.*?)```", section, flags=re.S)


def toy_scale(block):
    """Logical lines of a shell block (continuations joined), toy arguments appended."""
    lines = []
    for line in block.replace("\\\n", " ").splitlines():
        script = line.split()[1] if line.startswith("python ") else None
        lines.append(f"{line} {TOY_ARGS[script]}" if script in TOY_ARGS else line)
    return lines


def run(command, copy, **kwargs):
    env = {**os.environ, "PYTHONPATH": str(copy),
           "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"]}
    result = subprocess.run(command, cwd=copy, env=env, capture_output=True, text=True,
                            timeout=900, **kwargs)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def test_readme_own_data_commands_run_as_written(tmp_path):
    copy = tmp_path / "repo"
    shutil.copytree(REPO_ROOT, copy, ignore=lambda folder, names: [
        name for name in names
        if (folder == str(REPO_ROOT) and name in NOT_COPIED) or name == "__pycache__"])
    (shell,) = section_blocks("sh")
    lines = toy_scale(shell)
    assert any(line.startswith("python scripts/predict.py") for line in lines)
    output = run(["bash", "-c", "set -e\n" + "\n".join(lines)], copy)
    assert "no problems; per-class lists written" in output and "mean-IoU" in output
    assert (copy / "predictions" / "shapes" / "query_1_overlay.png").is_file()
    (python,) = section_blocks("python")
    assert "(2, " in run([sys.executable, "-c", python], copy)
