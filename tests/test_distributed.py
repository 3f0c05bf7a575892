"""How train.py and test.py end (panet/run/experiments.py `script_main`, panet/base/distributed.py
`exit_worker`): a torchrun worker leaves at once with the run's status and all of its output;
a plain process exits as Python does."""

import os
import subprocess
import sys

import pytest

from conftest import REPO_ROOT

SCRIPT = """
import atexit, logging
from sacred import Experiment
from panet.run.experiments import script_main

atexit.register(lambda: print("interpreter teardown"))
ex = Experiment("exit_check")
ex.add_config(fail=False)

@ex.main
def main(fail):
    print("ran")  # stdout is a pipe: block-buffered until flushed
    logging.getLogger("exit_check").warning("logged")
    if fail:
        raise ValueError("the run failed")

script_main(ex)
"""


def run(tmp_path, *args, world_size=None):
    env = {key: value for key, value in os.environ.items() if key not in ("WORLD_SIZE", "RANK")}
    env["PYTHONPATH"] = str(REPO_ROOT)
    if world_size is not None:
        env.update(WORLD_SIZE=str(world_size), RANK="1")
    script = tmp_path / "exit_check.py"
    script.write_text(SCRIPT)
    return subprocess.run([sys.executable, str(script), "-u", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("world_size", [None, 2])
def test_a_completed_run_exits_0_with_its_output(tmp_path, world_size):
    result = run(tmp_path, world_size=world_size)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ran\n") and "logged" in result.stderr
    # a torchrun worker skips the interpreter's teardown (where gloo's threads still run)
    assert ("interpreter teardown" in result.stdout) == (world_size is None)


@pytest.mark.parametrize("world_size", [None, 2])
def test_a_failed_run_exits_1_with_its_traceback(tmp_path, world_size):
    result = run(tmp_path, "with", "fail=True", world_size=world_size)
    assert result.returncode == 1
    assert "ValueError: the run failed" in result.stderr and result.stdout.startswith("ran\n")


@pytest.mark.parametrize("status, code, message", [(None, 0, ""), (0, 0, ""), (3, 3, ""),
                                                   ("stopped: see above", 1,
                                                    "stopped: see above\n")])
def test_exit_worker_keeps_the_status_and_the_buffered_output(status, code, message):
    program = (f"from panet.base.distributed import exit_worker\nprint('kept', end='')\n"
               f"exit_worker({status!r})")
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}, timeout=120)
    assert (result.returncode, result.stdout, result.stderr) == (code, "kept", message)
