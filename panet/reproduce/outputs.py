"""When a job is done (`panet.run.identity` decides what "the same" is), and the composition of
a job's command. A job is **done** when its output records the identity the job would make now:
a train job's checkpoint its training `fingerprint`, the identity of its data (the per-class
image lists) and its method's sha256; a test job's results.json its test `fingerprint`, the
sha256 of the checkpoint it tests now and of the method. `changes(job)` says what differs ("key:
recorded -> wanted"); an output without an identity or unreadable is changed, saying so. The
commit is no part of it. Other scripts' jobs (executors run any) are done with an output.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

from sacred.arg_parser import get_config_updates

from panet.base.errors import ConfigError, one_line
from panet.base.files import file_sha256
from panet.data.builder import make_source
from panet.reproduce.jobs import Job
from panet.run.compose import Composition, flatten
from panet.run.disk import planned_problems
from panet.run.experiments import compose_command
from panet.run.folder import CheckpointRef
from panet.run.identity import differences, fingerprint, method_sha256
from panet.run.validation import config_problems as composition_problems
from panet.weights.checkpoint import load_checkpoint


def composition(job: Job, checkpoint: Optional[CheckpointRef] = None) -> Composition:
    """The composition of `job`'s command as its script composes it, checked (ConfigError). A
    test job's checkpoint must exist, or be given (`checkpoint`: the one its train job writes)."""
    updates, named = get_config_updates(list(job.argv[job.argv.index("with") + 1:]))
    composed = compose_command(job.script, named, flatten(updates), checkpoint)
    problems = composition_problems(composed)
    if problems:
        raise ConfigError(problems)
    return composed


def job_problems(jobs: Sequence[Job], done: Sequence[str] = (), disk: bool = False,
                 fetch: bool = False) -> List[str]:
    """"job: problem" for the configurations of the jobs not `done` (the test of a train job
    that will run checked against the checkpoint it writes). With `disk`, also the files they
    read and write (`panet.run.disk.planned_problems`), each problem once naming the jobs it
    stops; `fetch` downloads absent ImageNet weights (not in a dry run)."""
    problems, planned, stopped = [], {}, {}
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
        for line in planned_problems(composed, bool(given), fetch=fetch) if disk else ():
            stopped.setdefault(line, []).append(job.name)
    return problems + [f"{names[0]}{f' and {len(names) - 1} more' if len(names) > 1 else ''}: "
                       f"{line}" for line, names in stopped.items()]


def _once(memo: Dict[tuple, str], key: tuple, compute: Callable[[], str]) -> str:
    if key not in memo:
        memo[key] = compute()
    return memo[key]


def recorded_identity(job: Job) -> Optional[Dict[str, Any]]:
    """The identity a job's output records, flat (None: an output older than identities)."""
    if job.trains:
        found = load_checkpoint(job.output, mmap=True).get("identity")
        return found and {**found["training"], "data": found["data"],
                          "method_sha256": found["code"]["method_sha256"]}
    found = json.loads(job.output.read_text()).get("identity")
    return found and {**found["settings"], "checkpoint_sha256": found["checkpoint_sha256"],
                      "method_sha256": found["method_sha256"]}


def wanted_identity(job: Job, memo: Dict[tuple, str]) -> Dict[str, Any]:
    """The identity the job would record now, flat. `memo` keeps the data identities (by what
    opens a source: `panet.data.datasets.DatasetSpec`) and file hashes (by path, size, time)."""
    composed = composition(job)
    method = method_sha256(composed.settings.model.factory)
    if job.trains:
        data = composed.settings.data
        return {**fingerprint(composed.config, "train"), "method_sha256": method,
                "data": _once(memo, data.source_key(train=True),
                              lambda: make_source(data, train=True).identity())}
    path: Optional[Path] = composed.checkpoint and composed.checkpoint.path
    stat = path and path.stat()
    return {**fingerprint(composed.config, "test"), "method_sha256": method,
            "checkpoint_sha256": path and _once(memo, (str(path), stat.st_size, stat.st_mtime_ns),
                                                lambda: file_sha256(path))}


def changes(job: Job, memo: Optional[Dict[tuple, str]] = None) -> List[str]:
    """Why a job's output is not what the job would make now ([]: it is). `memo`: shared by the
    jobs of one look (`wanted_identity`)."""
    if job.script not in ("train", "test"):
        return []
    try:
        recorded = recorded_identity(job)
    except (OSError, ValueError, KeyError, TypeError) as error:
        return [f"its output cannot be read: {one_line(error)}"]
    if recorded is None:
        return ["its output records no identity (written by an older panet-repro)"]
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
