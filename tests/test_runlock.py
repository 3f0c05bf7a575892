"""One writer per run folder (panet/base/lock.py), with real processes: a second writer is refused
while the first holds the folder, naming it; a holder killed with SIGKILL frees the folder; a
second train.py stops before writing anything."""

import os
import re
import signal
import socket
import subprocess
import sys
import textwrap

import pytest

from conftest import REPO_ROOT
from panet.base.lock import LOCK_FILE, RunFolderBusy, RunFolderLock, writer_of

HOLD = textwrap.dedent("""
    import sys, time
    from panet.base.lock import RunFolderLock
    lock = RunFolderLock(sys.argv[1]).acquire()
    print("holding", flush=True)
    time.sleep(600)
""")
TRY = textwrap.dedent("""
    import sys
    from panet.base.lock import RunFolderBusy, RunFolderLock
    try:
        RunFolderLock(sys.argv[1], patience=0.2).acquire()
    except RunFolderBusy as busy:
        print(busy)
        sys.exit(3)
    print("acquired")
""")


def python(code, *args, **popen):
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.Popen([sys.executable, "-c", code, *map(str, args)], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **popen)


@pytest.fixture
def holder(tmp_path):
    """A process holding the lock of tmp_path/run (it has printed "holding")."""
    folder = tmp_path / "run"
    process = python(HOLD, folder)
    assert process.stdout.readline().strip() == "holding", process.stderr.read()
    yield folder, process
    if process.poll() is None:
        process.kill()
    process.communicate()


def attempt(folder):
    process = python(TRY, folder)
    out, err = process.communicate(timeout=60)
    return process.returncode, out.strip(), err


def test_a_second_process_is_refused_naming_the_holder_until_it_is_killed(holder):
    folder, process = holder
    code, out, _ = attempt(folder)
    assert code == 3
    assert re.fullmatch(rf"{folder} is being written by pid {process.pid} on host "
                        rf"{re.escape(socket.gethostname())} since (\d{{4}}-\d\d-\d\d )?"
                        rf"\d\d:\d\d \(python -c {folder}\): wait for it or stop it", out), out
    seen = writer_of(folder)
    assert seen is not None and seen.pid == process.pid
    process.send_signal(signal.SIGKILL)  # no handler, no cleanup: the kernel drops the lock
    process.wait(timeout=60)
    assert writer_of(folder) is None
    assert attempt(folder)[:2] == (0, "acquired")


def test_the_lock_is_released_at_the_end_and_refuses_a_second_holder_in_process(tmp_path):
    folder = tmp_path / "run"
    assert writer_of(folder) is None  # never locked: no lock file
    with RunFolderLock(folder):
        assert (folder / LOCK_FILE).is_file()
        with pytest.raises(RunFolderBusy, match="wait for it or stop it"):
            RunFolderLock(folder, patience=0).acquire()
        assert writer_of(folder).pid == os.getpid()
    assert writer_of(folder) is None
    with RunFolderLock(folder):  # free again
        pass


def test_a_second_train_py_stops_before_writing_anything(holder, synthetic_root):
    folder, process = holder
    argv = [sys.executable, "train.py", "with", "synthetic", "fast",
            f"data.root={synthetic_root}", f"train.output_dir={folder}"]
    result = subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    refusal = [line for line in result.stderr.splitlines() if "is being written by" in line]
    assert len(refusal) == 1 and f"pid {process.pid}" in refusal[0], result.stderr
    assert sorted(path.name for path in folder.iterdir()) == [LOCK_FILE]  # no record, no weights
