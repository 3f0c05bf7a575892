"""The Slurm executor (panet/reproduce/slurm.py) against a real one-node Slurm started by the suite
(tests/slurm_cluster.py; skipped, saying why, where Slurm cannot run): the synthetic Table 1
through Slurm, a training job interrupted twice (the signal before a time limit, then
`scontrol requeue`) ending with the weights of an uninterrupted run, a failed job reported and
submitted again."""

import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from conftest import REPO_ROOT, load_script
from panet.reproduce import Scale, Setting, train_job
from panet.reproduce.jobrun import python_command, read_record, report
from panet.reproduce.slurm import (SLURM_FOLDER, SlurmOptions, current_statuses, scheduler_queue,
                                   submit, submit_job, wait)
from panet.weights.checkpoint import load_checkpoint, load_checkpoint_header

pytest_plugins = ["fake_jobs"]  # the `fake` fixture

reproduce = load_script("reproduce")
CPU_ONLY = SlurmOptions(gpus_per_job=0)
TIMEOUT = 600  # seconds any one wait may take before the test fails
ENDED = {"BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL",
         "OUT_OF_MEMORY", "PREEMPTED", "TIMEOUT"}  # Slurm's states of a job that has ended


def wait_for(condition, what, explain=lambda: ""):
    """Poll `condition` until it holds; on timeout fail with `explain()` (the state it saw)."""
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}. {explain()}"
        time.sleep(0.2)


def trainer_pid(output_dir):
    """The pid of the train.py process writing `output_dir` (the only one alive)."""
    marker = f"train.output_dir={output_dir}".encode()
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:  # not a process, or it has just ended
            continue
        if marker in argv and any(arg.endswith(b"train.py") for arg in argv):
            return int(entry.name)
    return None


def sigterm_pending(pid):
    """Whether SIGTERM waits in the pending set of process `pid` (/proc/<pid>/status)."""
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    pending = [int(line.split()[1], 16) for line in status if line.startswith(("SigPnd", "ShdPnd"))]
    return any(mask >> (signal.SIGTERM - 1) & 1 for mask in pending)


@contextlib.contextmanager
def frozen(pid):
    """Hold process `pid` stopped (SIGSTOP) for the block and let it go after (SIGCONT), so
    that a signal sent meanwhile finds it at a known step however fast the steps are."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield pid
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)


def ended(slurm_cluster, job_id):
    """The state of a Slurm job once it has ended (its output may come a moment before)."""
    wait_for(lambda: slurm_cluster.job_field(job_id, "JobState") in ENDED,
             f"Slurm job {job_id} to end")
    return slurm_cluster.job_field(job_id, "JobState")


def wait_until_requeued(job_id, explain=lambda: ""):
    wait_for(lambda: scheduler_queue([job_id])[job_id].state == "PENDING", "the requeue", explain)


def start_soon(slurm_cluster, job_id):
    """Let a requeued job start now, not after the two minutes Slurm holds it back; but only
    once the second of its requeue has passed: slurmd refuses a job launched within the second
    it killed it ("Job credential revoked", times in whole seconds), and the job ends."""
    time.sleep(1.5)
    wait_for(lambda: slurm_cluster.run("scontrol", "update", f"jobid={job_id}",
                                       "StartTime=now").returncode == 0, "the start time")


def test_synthetic_table_1_through_slurm(slurm_cluster, synthetic_root, tmp_path, capsys):
    out = tmp_path / "out"
    options = ["--table", "1", "--synthetic", "--data-root", str(synthetic_root), "--out",
               str(out), "--steps", "1", "--test-runs", "1", "--test-episodes", "1", "--size",
               "65"]
    command = [sys.executable, "scripts/reproduce.py", *options, "--executor", "slurm",
               "--gpus-per-job", "0", "--wait"]
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True,
                            timeout=1800, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "24 jobs: 24 done, 0 changed, 0 running, 0 pending, 0 blocked, 0 failed" in result.stdout
    assert "All 16 test jobs done" in (out / "table1.md").read_text()

    jobs = reproduce.parse_args(options).target.jobs
    ids = {job.name: read_record(job)["slurm_job_id"] for job in jobs}
    assert len(set(ids.values())) == len(jobs) == 24
    for job in jobs:  # Slurm ran every job, the tests behind their checkpoint's training
        assert ended(slurm_cluster, ids[job.name]) == "COMPLETED"
        assert slurm_cluster.job_field(ids[job.name], "JobName") == job.name
        script = (job.folder / SLURM_FOLDER / f"{ids[job.name]}_submission.sh").read_text()
        for need in job.needs:
            assert f"#SBATCH --dependency=afterok:{ids[need]}\n" in script
        assert (job.folder / SLURM_FOLDER / f"{ids[job.name]}_0_log.out").is_file()
    assert reproduce.main([*options, "--status"]) == 0
    assert capsys.readouterr().out.endswith(
        "24 jobs: 24 done, 0 changed, 0 running, 0 pending, 0 blocked, 0 failed\n")


def test_a_training_job_stopped_twice_ends_with_the_weights_of_an_uninterrupted_run(
        slurm_cluster, synthetic_root, tmp_path):
    steps = 60

    def job_in(out):
        scale = Scale(out, synthetic=True, data_root=synthetic_root, steps=steps, size=65)
        job = train_job(Setting("voc", 0, 1, 1), scale)
        return dataclasses.replace(job, argv=(*job.argv, "train.checkpoint_every=1",
                                              "data.workers=0", "device=cpu"))  # bits: CPU

    job, reference = job_in(tmp_path / "slurm"), job_in(tmp_path / "straight")
    straight = subprocess.Popen(python_command(reference.argv), cwd=REPO_ROOT,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    job_id = submit_job(job, CPU_ONLY, None)
    last = job.output.parent / "last.pt"

    def saved_step():
        return load_checkpoint_header(last)["step"] if last.is_file() else 0

    def job_report():
        shown = " ".join(slurm_cluster.run("scontrol", "show", "job", job_id).stdout.split())
        logs = sorted((job.folder / SLURM_FOLDER).glob(f"{job_id}_*_log.*"))
        return " | ".join([f"last.pt at step {saved_step()}", shown,
                           *(f"{log.name}: {log.read_text()[-1500:]}" for log in logs),
                           slurm_cluster.log_tail()])

    def trained_past(step):
        """Whether last.pt is past `step`; fails at once when the job has ended without it."""
        if saved_step() > step:
            return True
        assert slurm_cluster.job_field(job_id, "JobState") not in ENDED, job_report()
        return False

    def trainer():
        pid = trainer_pid(job.folder)
        assert pid is not None, f"train.py ended before the test could stop it: {job_report()}"
        return pid

    wait_for(lambda: trained_past(0), "training to start", job_report)
    # held stopped while signalled: its 60 steps take ~2.4 s here, and on a busy machine the
    # signal could otherwise arrive after the last one
    with frozen(trainer()) as pid:
        # what Slurm sends 90 s before a time limit (--signal=USR2@90): submitit's handler stops
        # train.py with SIGTERM (it saves last.pt) and requeues the job
        assert slurm_cluster.run("scancel", "--signal=USR2", job_id).returncode == 0
        wait_for(lambda: sigterm_pending(pid), "submitit to stop train.py", job_report)
    wait_until_requeued(job_id, job_report)
    first_stop = saved_step()
    start_soon(slurm_cluster, job_id)
    wait_for(lambda: trained_past(first_stop), "the requeued job to train", job_report)
    with frozen(trainer()):
        # a requeue as preemption does it: Slurm sends SIGCONT and SIGTERM, then puts the job back
        assert slurm_cluster.run("scontrol", "requeue", job_id).returncode == 0
        wait_until_requeued(job_id, job_report)
    start_soon(slurm_cluster, job_id)
    wait_for(job.has_output, "the job to finish", job_report)
    assert straight.wait(timeout=TIMEOUT) == 0, straight.stderr.read()[-3000:]

    log = (job.folder / SLURM_FOLDER / f"{job_id}_0_log.out").read_text()
    resumed_at = [int(line.split(" at step ")[1].split()[0]) for line in log.splitlines()
                  if line.startswith("resuming ")]
    assert log.count("interrupted: saved") == 2 and len(resumed_at) == 2
    assert 1 <= resumed_at[0] == first_stop < resumed_at[1] < steps
    assert slurm_cluster.job_field(job_id, "Restarts") == "2"
    assert ended(slurm_cluster, job_id) == "COMPLETED"
    final, expected = load_checkpoint(job.output), load_checkpoint(reference.output)
    assert final["step"] == expected["step"] == steps
    for key, value in expected["model"].items():
        assert torch.equal(final["model"][key], value), key
    for index, state in expected["optimizer"]["state"].items():
        for name, value in state.items():
            assert torch.equal(final["optimizer"]["state"][index][name], value), (index, name)


def test_a_failed_job_is_reported_and_submitted_again(slurm_cluster, fake, tmp_path):
    flag = tmp_path / "flag"
    failing = fake("failing", "--fail-unless", flag)
    dependent = fake("dependent", "--require", failing.output, needs=["failing"])
    jobs = [failing, dependent]
    assert submit(jobs, CPU_ONLY) == ["failing", "dependent"]
    first = {job.name: read_record(job)["slurm_job_id"] for job in jobs}
    assert [status.state for status in wait(jobs, poll_seconds=0.5)] == ["failed", "blocked"]
    err = failing.folder / SLURM_FOLDER / f"{first['failing']}_0_log.err"
    assert report(current_statuses(jobs)).splitlines() == [
        f"[failed] failing: Slurm job {first['failing']} left the queue without "
        f"{failing.output}: failing: exit code 1: boom: {flag} is missing",
        f"    log: {err}",
        f"[blocked] dependent: Slurm job {first['dependent']} can never start: a job it needs "
        "failed (submitting again replaces both)",
        "2 jobs: 0 done, 0 changed, 0 running, 0 pending, 1 blocked, 1 failed"]
    assert ended(slurm_cluster, first["failing"]) == "FAILED"

    flag.touch()
    assert submit(jobs, CPU_ONLY) == ["failing", "dependent"]
    second = {job.name: read_record(job)["slurm_job_id"] for job in jobs}
    assert submit(jobs, CPU_ONLY) == []  # queued now: a rerun leaves them alone
    assert {job.name: read_record(job)["slurm_job_id"] for job in jobs} == second
    assert [status.state for status in wait(jobs, poll_seconds=0.5)] == ["done", "done"]
    assert ended(slurm_cluster, first["dependent"]) == "CANCELLED"
    for name, job_id in second.items():
        assert job_id != first[name]
        assert ended(slurm_cluster, job_id) == "COMPLETED"
    assert submit(jobs, CPU_ONLY) == []  # done
