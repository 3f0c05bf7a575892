"""Whether a job's output is the one the job would make now (`panet.run.identity` decides what
"the same" is), and the composition of a job's command.

A job is **done** when its output exists and records the identity the job would make now:

- a train job: the identity its checkpoint stores (`training_identity`): the training
  fingerprint equals `fingerprint(config, "train")` of the job's composed config, the data
  identity that of the data now (`make_source(settings.data, train=True).identity()`: the
  per-class image lists) and the method's source SHA-256 that of the method now;
- a test job: the identity its results.json records (`test_identity`): the settings equal
  `fingerprint(config, "test")`, the checkpoint SHA-256 that of the checkpoint file it tests
  now (a retrained model or another --released folder shows), the method's source SHA-256.

`changes(job)` lists what differs as "key: recorded -> wanted" (`identity.differences`); an
output without an identity (older), or one that cannot be read, counts as changed, saying so.
The commit that made an output is not part of it: a reused result keeps its commit (the tables
name it). Jobs of other scripts than train.py and test.py (the executors run any command) are
done once their output exists.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from sacred.arg_parser import get_config_updates

from panet.base.errors import ConfigError, one_line
from panet.base.safe_load import file_sha256
from panet.data.builder import make_source
from panet.run.compose import Composition, flatten
from panet.run.experiments import compose_command
from panet.run.folder import CheckpointRef
from panet.run.identity import differences, fingerprint, method_sha256
from panet.run.validation import config_problems as composition_problems
from panet.weights.checkpoint import load_checkpoint

from panet.reproduce.jobs import Job

IDENTIFIED = ("train", "test")  # the scripts whose outputs record an identity
OLDER = "its output records no identity (written by an older panet-repro)"


def composition(job: Job, checkpoint: Optional[CheckpointRef] = None) -> Composition:
    """The composition (`panet.run.compose`) of `job`'s command, as its script composes it, and
    checked (ConfigError). A test job's checkpoint must exist, or be given (`checkpoint`, standing
    for the one its train job will write)."""
    updates, named = get_config_updates(list(job.argv[job.argv.index("with") + 1:]))
    composed = compose_command(job.script, named, flatten(updates), checkpoint)
    problems = composition_problems(composed)
    if problems:
        raise ConfigError(problems)
    return composed


def config_problems(jobs: Sequence[Job], done: Sequence[str] = ()) -> List[str]:
    """The problems of every job's configuration but the `done` ones ("job: problem"), checked
    before anything runs. A test job of a train job that will run is checked against the
    checkpoint that job will write; files are checked by each job when it starts."""
    problems, planned = [], {}
    for job in (job for job in jobs if job.name not in done):
        given = [planned[name] for name in job.needs if name in planned]
        try:
            composed = composition(job, given[0] if given else None)
        except ConfigError as error:
            problems += [f"{job.name}: {line}" for line in error.problems]
            continue
        if job.trains:
            planned[job.name] = CheckpointRef(str(job.output), job.output, "panet",
                                              composed.settings.train.steps, composed.config,
                                              None)
    return problems


@functools.lru_cache(maxsize=64)
def _sha256(path: Path, size: int, modified: int) -> str:
    return file_sha256(path)


def checkpoint_sha256(path: Path) -> str:
    """A file's SHA-256, computed once per file version (path, size, modification time)."""
    stat = path.stat()
    return _sha256(path, stat.st_size, stat.st_mtime_ns)


def data_identity(composed: Composition, memo: Dict[tuple, str]) -> str:
    """The identity of the data a train job reads now, computed once per `memo` (one look at
    the jobs) for what opens a source (`panet.data.datasets.DatasetSpec`: name, root,
    lists_dir, year, cache_dir, split)."""
    data = composed.settings.data
    key = (data.name, str(data.root_path), str(data.lists_dir), data.year, str(data.cache_dir),
           data.split(train=True))
    if key not in memo:
        memo[key] = make_source(data, train=True).identity()
    return memo[key]


def recorded_identity(job: Job) -> Optional[Dict[str, Any]]:
    """The identity a job's output records, flat (settings by dotted key, then "data" and
    "method_sha256" of a train job, "checkpoint_sha256" and "method_sha256" of a test), or None
    for an output older than identities."""
    if job.trains:
        identity = load_checkpoint(job.output, mmap=True).get("identity")
        return None if identity is None else {
            **identity["training"], "data": identity["data"],
            "method_sha256": identity["code"]["method_sha256"]}
    identity = json.loads(job.output.read_text()).get("identity")
    return None if identity is None else {
        **identity["settings"], "checkpoint_sha256": identity["checkpoint_sha256"],
        "method_sha256": identity["method_sha256"]}


def wanted_identity(job: Job, memo: Dict[tuple, str]) -> Dict[str, Any]:
    """The identity the job would record now, flat as `recorded_identity` (`memo`: see
    `data_identity`)."""
    composed = composition(job)
    method = method_sha256(composed.settings.model.factory)
    if job.trains:
        return {**fingerprint(composed.config, "train"), "data": data_identity(composed, memo),
                "method_sha256": method}
    tested = composed.checkpoint
    return {**fingerprint(composed.config, "test"), "method_sha256": method,
            "checkpoint_sha256": None if tested is None else checkpoint_sha256(tested.path)}


def changes(job: Job, memo: Optional[Dict[tuple, str]] = None) -> List[str]:
    """Why a job's existing output is not what the job would make now ([]: it is; module
    docstring). `memo`: shared by the jobs of one look (`data_identity`)."""
    if job.script not in IDENTIFIED:
        return []
    try:
        recorded = recorded_identity(job)
    except (OSError, ValueError, KeyError, TypeError) as error:
        return [f"its output cannot be read: {one_line(error)}"]
    if recorded is None:
        return [OLDER]
    try:
        wanted = wanted_identity(job, {} if memo is None else memo)
    except (OSError, ValueError) as error:
        return [f"what it would make now cannot be known: {one_line(error)}"]
    return differences(recorded, wanted)


def set_aside(job: Job) -> Path:
    """Move a job's run folder to <name>.replaced-<n> (kept), so that the job runs anew."""
    folder, number = job.folder, 1
    while folder.with_name(f"{folder.name}.replaced-{number}").exists():
        number += 1
    return folder.rename(folder.with_name(f"{folder.name}.replaced-{number}"))
