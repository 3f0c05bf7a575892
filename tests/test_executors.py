"""Running scripts/reproduce.py's jobs elsewhere than one after another (panet/reproduce/jobrun.py,
panet/reproduce/executors.py): K local jobs at a time on their own GPUs, the order jobs keep, job
status from run folders and a scheduler's queue, the options. Slurm itself: tests/test_slurm.py.

Most jobs here are a stand-in script (tests/fake_jobs.py: stdlib only, starts in milliseconds)
whose behaviour the test chooses; one end-to-end run trains two real models two at a time."""

import json
import os
import subprocess
import sys

import pytest
from submitit.slurm.slurm import _make_sbatch_string

from conftest import load_script
from panet.base.lock import RunFolderLock
from panet.reproduce import TABLES, Scale, Setting, jobs_for, train_job
from panet.reproduce import jobs as planning
from panet.reproduce.executors import LOG_FILE, LocalExecutor
from panet.reproduce.jobrun import (RECORD_FILE, QueueEntry, job_status, prerequisites,
                                    remove_finished_caches, summary, survey, write_record)
from panet.reproduce.slurm import SlurmOptions, dependency_of, time_minutes

pytest_plugins = ["fake_jobs"]  # the `fake` fixture

reproduce = load_script("reproduce")


# ---------------------------------------------------------------- the local executor

def test_two_jobs_run_at_once_each_on_its_own_gpu_and_a_dependent_waits(fake, tmp_path, capsys):
    meet = tmp_path / "meet"
    meet.mkdir()
    first = fake("first", "--meet", meet, "first", "second", "--env-out", tmp_path / "1.json")
    second = fake("second", "--meet", meet, "second", "first", "--env-out", tmp_path / "2.json")
    third = fake("third", "--require", first.output, "--env-out", tmp_path / "3.json",
                 needs=["first"])
    assert LocalExecutor(2, gpus=["3", "5"]).run([first, second, third]) == []
    gpus = [json.loads((tmp_path / f"{i}.json").read_text())["CUDA_VISIBLE_DEVICES"]
            for i in (1, 2, 3)]
    assert sorted(gpus[:2]) == ["3", "5"] and gpus[2] in ("3", "5")
    for job in (first, second, third):
        assert job.has_output()
        record = json.loads((job.folder / RECORD_FILE).read_text())
        assert record["executor"] == "local" and record["exit_code"] == 0
        log = (job.folder / LOG_FILE).read_text().splitlines()
        assert log[0].startswith("==> ") and log[0].endswith(" ".join(job.argv[1:]))
    printed = capsys.readouterr().out
    assert printed.count("[run]") == 3 and printed.count("[done]") == 3


def test_without_gpus_jobs_keep_the_environment_they_would_have_alone(fake, tmp_path,
                                                                     monkeypatch):
    """Same threads as one after another (another thread count would round differently)."""
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    meet = tmp_path / "meet"
    meet.mkdir()
    jobs = [fake(name, "--meet", meet, name, partner, "--env-out", tmp_path / f"{name}.json")
            for name, partner in (("a", "b"), ("b", "a"))]
    assert LocalExecutor(2, gpus=[]).run(jobs) == []
    for name in ("a", "b"):
        assert json.loads((tmp_path / f"{name}.json").read_text()) == {
            "CUDA_VISIBLE_DEVICES": None, "OMP_NUM_THREADS": "3"}


def test_a_failure_skips_its_dependents_is_reported_with_its_log_and_a_rerun_continues(
        fake, tmp_path, capsys):
    flag = tmp_path / "flag"
    failing = fake("failing", "--fail-unless", flag)
    dependent = fake("dependent", "--require", failing.output, needs=["failing"])
    other = fake("other")
    jobs = [failing, dependent, other]
    assert LocalExecutor(2, gpus=[]).run(jobs) == ["failing", "dependent"]
    printed = capsys.readouterr().out
    log = failing.folder / LOG_FILE
    assert f"[failed] failing: exit code 1: boom: {flag} is missing\n      log: {log}" in printed
    assert "[skipped] dependent: needs the failed job(s) failing" in printed
    statuses = survey(jobs, {})
    assert [(status.state, status.detail, status.log) for status in statuses] == [
        ("failed", f"exit code 1: boom: {flag} is missing", str(log)),
        ("blocked", "needs failing (failed)", None),
        ("done", str(other.output), None)]
    assert summary(statuses) == ("3 jobs: 1 done, 0 changed, 0 running, 0 pending, 1 blocked, "
                                 "1 failed")
    flag.touch()
    assert LocalExecutor(2, gpus=[]).run(jobs) == []
    assert all(job.has_output() for job in jobs)
    assert log.read_text().count("==> ") == 2  # both attempts in the log


def test_tests_sharing_a_feature_cache_run_one_after_another_and_it_goes_last(fake, tmp_path):
    cache = tmp_path / "feature_cache" / "weights"
    order = tmp_path / "order.txt"
    group = [fake(name, "--alone", tmp_path / "busy", "--order", order,
                  f"test.cache_dir={cache}", cleanup=[cache] if name == "t3" else [])
             for name in ("t1", "t2", "t3")]
    assert LocalExecutor(3, gpus=[]).run(group) == []
    assert order.read_text().split() == ["t1", "t2", "t3"]
    assert not cache.exists()


# ---------------------------------------------------------------- order, commands, caches

def test_prerequisites_keep_needs_and_the_order_of_a_shared_cache(tmp_path):
    jobs = jobs_for(TABLES["6"].settings(), Scale(tmp_path))
    order = prerequisites(jobs)
    train = "train-voc-fold1-1way-5shot-align"
    dense, scribble, bbox = (f"test-voc-fold1-1way-5shot-align-{weak}"
                             for weak in ("dense", "scribble", "bbox"))
    assert order[train] == ((), ())
    assert order[dense] == ((train,), ())
    assert order[scribble] == ((train,), (dense,))
    assert order[bbox] == ((train,), (dense, scribble))
    init = prerequisites(jobs_for(TABLES["1"].settings(), Scale(tmp_path)))
    assert init["test-voc-fold2-1way-5shot-init"] == ((), ("test-voc-fold2-1way-1shot-init",))


def test_command_now_continues_an_unfinished_training_run(tmp_path):
    train = train_job(Setting("voc", 0, 1, 1), Scale(tmp_path))
    test = planning.test_job(Setting("voc", 0, 1, 1), Scale(tmp_path))
    assert train.command_now() == list(train.argv) and test.command_now() == list(test.argv)
    last = train.output.parent / "last.pt"
    last.parent.mkdir(parents=True)
    last.touch()
    assert train.command_now() == [*train.argv, f"train.resume={last}"]
    assert train.folder == last.parent.parent and test.folder == test.output.parent


def test_a_shared_cache_is_removed_once_all_its_readers_are_done(fake, tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    readers = [fake(name, f"test.cache_dir={cache}", cleanup=[cache] if name == "c" else [])
               for name in ("a", "b", "c")]
    for job in readers[1:]:  # the last one (with the cleanup) done, the first not yet
        job.output.parent.mkdir(parents=True)
        job.output.touch()
    assert remove_finished_caches(readers) == [] and cache.is_dir()
    readers[0].output.parent.mkdir(parents=True)
    readers[0].output.touch()
    assert remove_finished_caches(readers) == [cache] and not cache.exists()


# ---------------------------------------------------------------- status

def test_status_of_submitted_jobs_comes_from_the_queue_then_the_run_folder(fake, tmp_path):
    job = fake("job")
    err = job.folder / "slurm" / "12_0_log.err"
    err.parent.mkdir(parents=True)
    err.write_text("loading\nslurmstepd: error: *** JOB 12 CANCELLED DUE TO TIME LIMIT ***\n"
                   "srun: error: node1: task 0: Exited with exit code 1\n")
    write_record(job, executor="slurm", slurm_job_id="12", stderr=str(err))

    def status(queue):
        found = job_status(job, queue)
        return found.state, found.detail, found.slurm_id

    def queued(state, reason="None"):
        return {"12": QueueEntry(state, reason)}

    assert status(queued("RUNNING")) == ("running", "Slurm job 12 (RUNNING)", "12")
    assert status(queued("PENDING", "Dependency")) == (
        "pending", "Slurm job 12 (PENDING: Dependency)", "12")
    assert status(queued("PENDING", "DependencyNeverSatisfied"))[::2] == ("blocked", "12")
    assert status(None) == ("pending", "Slurm job 12 (squeue is not available here to say "
                                       "more)", "12")
    killed = ("failed", f"Slurm job 12 left the queue without {job.output}: slurmstepd: error: "
                        "*** JOB 12 CANCELLED DUE TO TIME LIMIT ***", None)
    assert status({}) == killed and status(queued("TIMEOUT", "TimeLimit")) == killed
    write_record(job, executor="slurm", slurm_job_id="12", stderr=str(err),
                 error="job: exit code 1: boom")  # the job's own account comes first
    assert status({})[1] == (f"Slurm job 12 left the queue without {job.output}: job: exit "
                             "code 1: boom")
    job.output.write_text("done")
    assert status(queued("COMPLETING"))[:2] == ("done", str(job.output))


def test_status_of_local_jobs(fake, tmp_path):
    job = fake("job")
    assert job_status(job, {}).detail == "not started"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    record = dict(executor="local", host=os.uname().nodename, log=str(tmp_path / "x.log"))
    write_record(job, **record, pid=dead.pid, exit_code=None)
    assert job_status(job, {}).detail == "stopped before finishing (its executor was interrupted)"
    write_record(job, **record, pid=os.getpid(), exit_code=None)
    assert job_status(job, {}).state == "running"
    with RunFolderLock(job.folder):
        found = job_status(job, {})
    assert found.state == "running" and f"being written by pid {os.getpid()}" in found.detail
    train = train_job(Setting("voc", 0, 1, 1), Scale(tmp_path))
    (train.output.parent).mkdir(parents=True)
    (train.output.parent / "last.pt").touch()
    assert job_status(train, {}).detail == (f"not started; continues from "
                                            f"{train.output.parent / 'last.pt'}")


# ---------------------------------------------------------------- Slurm options

def test_slurm_time_limits_in_minutes():
    cases = {"90": 90, "5:30": 6, "2:00:00": 120, "1-0": 1440, "1-2:30": 1590,
             "0-0:0:59": 1, "3-00:00:00": 4320}
    assert {text: time_minutes(text) for text in cases} == cases
    for bad in ("", "2h", "1:2:3:4", "0", "-5"):
        with pytest.raises(ValueError):
            time_minutes(bad)


def test_slurm_options_reach_the_batch_script(tmp_path):
    options = SlurmOptions(partition="gpu", time="1:30:00", gpus_per_job=2, cpus_per_job=9,
                           mem="32G", extra=(("qos", "high"),))
    script = _make_sbatch_string(command="run", folder=tmp_path, **options.parameters(
        "train-x", dependency_of(["a"], ["b", "c"], {"a": "7", "c": "9"})))
    for line in ("--partition=gpu", "--time=90", "--gpus-per-node=2", "--cpus-per-task=9",
                 "--mem=32G", "--qos=high", "--dependency=afterok:7,afterany:9",
                 "--job-name=train-x", "--signal=USR2@90"):
        assert f"#SBATCH {line}\n" in script, line
    bare = _make_sbatch_string(command="run", folder=tmp_path,
                               **SlurmOptions(gpus_per_job=0).parameters("t", None))
    assert "gpus" not in bare and "dependency" not in bare and "--time=240" in bare
    assert dependency_of(["a"], [], {}) is None  # done jobs impose nothing


@pytest.mark.parametrize("options", [
    ["--parallel", "0"], ["--executor", "slurm", "--parallel", "2"], ["--wait"],
    ["--gpus-per-job", "1"], ["--executor", "slurm", "--slurm-time", "2h"],
    ["--executor", "slurm", "--slurm-extra", "qos"], ["--status", "--dry-run"],
    ["--executor", "slurm", "--gpus-per-job", "-1"]])
def test_executor_options_that_do_not_go_together_are_refused(options, capsys):
    with pytest.raises(SystemExit):
        reproduce.parse_args(["--table", "1", *options])
    assert "error:" in capsys.readouterr().err


# ---------------------------------------------------------------- end to end

def test_two_real_training_jobs_at_once_then_their_status(synthetic_root, tmp_path, capsys):
    argv = ["--analysis", "prototype-distance", "--synthetic", "--data-root",
            str(synthetic_root), "--out", str(tmp_path), "--steps", "2", "--test-episodes", "2",
            "--size", "65", "--executor", "local", "--parallel", "2"]
    assert reproduce.main(argv) == 0
    printed = capsys.readouterr().out
    assert printed.count("[run]") == 2 and printed.count("[done]") == 2
    assert (tmp_path / "prototype_distance.md").is_file()
    for name in ("train-voc-fold0-1way-5shot-align", "train-voc-fold0-1way-5shot-noalign"):
        log = (tmp_path / "runs" / name / LOG_FILE).read_text()
        assert "trained 2 steps" in log
    assert reproduce.main(argv[:-4] + ["--status"]) == 0
    assert capsys.readouterr().out.endswith(
        "2 jobs: 2 done, 0 changed, 0 running, 0 pending, 0 blocked, 0 failed\n")
