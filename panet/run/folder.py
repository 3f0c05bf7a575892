"""Run folders: where one train.py / test.py run writes, laid out here and nowhere else, with one
writer at a time.

    <run folder>/
      checkpoints/last.pt, snapshot_<step>.pt, final.pt   train.py (`weights.checkpoint`)
      results.json, episodes.npz                          test.py (`report`)
      tensorboard/                                        TensorBoard events of both
      config.json, run.json, cout.txt, metrics.json       sacred's record of the run
      .lock                                               who writes the folder now

A run's folder is the `train.output_dir` / `test.output_dir` given; for a resumed training run
without one, the folder holding the resumed checkpoint (wherever it now is); else runs/<id>.
A checkpoint never names the folder a run writes (`panet.run.compose`).

One writer: the process writing a folder holds its lock (`panet.base.lock`) from before its first
write to its end; `lock` is counted per process, so sacred's observer and the main function of
one run share it.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Optional

import torch

from panet.base.files import DiskFullError, PathLike, format_size, free_space
from panet.base.lock import RunFolderLock
from panet.weights.checkpoint import load_checkpoint_header, save_checkpoint
from panet.weights.model_files import read_header
from panet.weights.released import ReleasedSetting

RUNS_DIR = "runs"  # new numbered run folders go here, under the current folder
_HELD: Dict[Path, list] = {}  # folder -> [its lock, how many holders in this process]


class RunFolder:
    """One run folder (module docstring): the paths of what runs write there, and its lock."""

    CHECKPOINTS = "checkpoints"
    LAST, FINAL = "last.pt", "final.pt"
    RESULTS, RECORDS = "results.json", "episodes.npz"

    def __init__(self, path: PathLike):
        self.path = Path(path).expanduser()

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, RunFolder) and self.path.absolute() == other.path.absolute()

    @classmethod
    def of_checkpoint(cls, checkpoint: PathLike) -> Optional["RunFolder"]:
        """The run folder holding a checkpoint (<run>/checkpoints/<name>.pt), else None."""
        checkpoint = Path(checkpoint).expanduser()
        return cls(checkpoint.parent.parent) if checkpoint.parent.name == cls.CHECKPOINTS \
            else None

    @property
    def checkpoints(self) -> Path:
        return self.path / self.CHECKPOINTS

    def checkpoint(self, name: str) -> Path:
        return self.checkpoints / name

    @property
    def last(self) -> Path:
        return self.checkpoint(self.LAST)

    @property
    def final(self) -> Path:
        return self.checkpoint(self.FINAL)

    def snapshot(self, step: int) -> Path:
        return self.checkpoint(f"snapshot_{step:06d}.pt")

    @property
    def results(self) -> Path:
        return self.path / self.RESULTS

    @property
    def records(self) -> Path:
        return self.path / self.RECORDS

    def holds_training(self) -> bool:
        return self.checkpoints.is_dir()

    def saved_checkpoints(self) -> list:
        return sorted(self.checkpoints.glob("*.pt"))

    def newest_checkpoint(self) -> Path:
        """The one of final.pt and last.pt with the most steps (final.pt on a tie). Raises
        FileNotFoundError when neither exists."""
        candidates = [path for path in (self.final, self.last) if path.is_file()]
        if not candidates:
            raise FileNotFoundError(f"a folder without {self.final} or {self.last}: train.py has "
                                    "not saved a checkpoint there")
        return max(candidates, key=lambda path: load_checkpoint_header(path)["step"])

    def lock(self) -> "RunFolder":
        """Become the folder's writer (made if needed), or raise `RunFolderBusy` naming the
        process that is; held until `unlock` (counted within this process)."""
        key = self.path.absolute()
        if key not in _HELD:
            _HELD[key] = [RunFolderLock(self.path).acquire(), 0]
        _HELD[key][1] += 1
        return self

    def unlock(self) -> None:
        key = self.path.absolute()
        held = _HELD.get(key)
        if held is None:
            return
        held[1] -= 1
        if held[1] == 0:
            held[0].release()
            del _HELD[key]


def checkpoint_file(given: PathLike) -> Path:
    """The checkpoint file `given` names: the file itself, or a run folder's (or its
    checkpoints/ folder's) newest checkpoint. Raises FileNotFoundError saying what was sought."""
    path = Path(given).expanduser()
    if path.is_file():
        return path
    if not path.is_dir():
        raise FileNotFoundError(f"checkpoint '{path}' does not exist (expected a checkpoint .pt "
                                "file or a run folder holding checkpoints/final.pt or last.pt)")
    if path.name == RunFolder.CHECKPOINTS and not (path / RunFolder.CHECKPOINTS).is_dir():
        path = path.parent
    return RunFolder(path).newest_checkpoint()


@dataclass(frozen=True)
class CheckpointRef:
    """A checkpoint named by test.checkpoint or train.resume, resolved once: the file and its
    `panet.weights.model_files.Header` (its tensors are not read)."""

    given: str
    path: Path
    format: str
    step: Optional[int]
    config: Optional[Dict[str, Any]]
    path_setting: Optional[ReleasedSetting]
    identity: Optional[Dict[str, Any]] = None  # `panet.run.identity.training_identity`

    @property
    def run_folder(self) -> Optional[RunFolder]:
        return RunFolder.of_checkpoint(self.path)


def resolve_checkpoint(given: PathLike) -> CheckpointRef:
    """Resolve a checkpoint setting. Raises FileNotFoundError or a one-line ValueError saying
    what the file holds when it is no model."""
    path = checkpoint_file(given)
    return CheckpointRef(str(given), path, *read_header(path))


class Checkpointer:
    """The checkpoints of one training run: last.pt every `last_every` steps and when
    interrupted, snapshot_<step>.pt every `snapshot_every` steps, final.pt at the end (atomic).
    After the first step, a warning when the folder lacks the space they need; a save that does
    not fit stops the run with one line saying how to continue. `contents(step)`: the keywords
    of `checkpoint_contents` for that step."""

    def __init__(self, folder: RunFolder, train, start: int,
                 contents: Callable[[int], Dict[str, Any]]):
        self.folder, self.train, self.start, self.contents = folder, train, start, contents

    def save(self, step: int, path: Path) -> Path:
        try:
            return save_checkpoint(path, **self.contents(step))
        except DiskFullError as full:
            raise full.then(self.how_to_continue()) from None

    @property
    def last_every(self) -> int:
        """Steps between saves of last.pt: train.checkpoint_every, and at least every tenth of
        the run (a short run can be resumed too); 0 (none) when checkpoint_every is 0."""
        every = self.train.checkpoint_every
        return min(every, -(-self.train.steps // 10)) if every else 0

    def step(self, step: int) -> None:
        """After training step `step` (1-based)."""
        train = self.train
        if step == self.start + 1:  # the optimizer has its state now: sizes are known
            self.warn_if_short_of_space(step)
        if self.last_every and step % self.last_every == 0:
            self.save(step, self.folder.last)
        if train.snapshot_every and step % train.snapshot_every == 0:
            self.save(step, self.folder.snapshot(step))

    def interrupted(self, step: int) -> str:
        """Save last.pt after an interruption; returns the message saying how to continue."""
        saved = self.save(step, self.folder.last)
        return f"interrupted: saved {saved}; continue with\n  {resume_command(saved)}"

    def how_to_continue(self) -> str:
        try:
            self.folder.newest_checkpoint()
        except FileNotFoundError:
            return "no checkpoint was saved yet: free some space, then run the same command again"
        return f"free some space, then continue with: {resume_command(self.folder.path)}"

    def last_good(self) -> str:
        last = self.folder.last
        return (f"the last good checkpoint is {last}" if last.is_file()
                else "no checkpoint had been saved yet")

    def files_to_write(self) -> int:
        """How many checkpoint files the rest of the run adds: last.pt if saved later and absent
        now, a snapshot per multiple of snapshot_every, and final.pt (even when it exists: its
        replacement needs room for the new copy)."""
        def multiples(every: int) -> int:
            return self.train.steps // every - self.start // every if every else 0

        writes_last = multiples(self.last_every) > 0 and not self.folder.last.is_file()
        return int(writes_last) + multiples(self.train.snapshot_every) + 1

    def warn_if_short_of_space(self, step: int) -> None:
        """Print a warning when the folder's free space is below what the files still to come
        need, each the size of this step's model and optimizer tensors."""
        state = self.contents(step)
        optimizer = state["optimizer"].state.values()  # per parameter: its buffers
        tensors = [*state["model"].state_dict().values(),
                   *(value for kept in optimizer for value in kept.values())]
        size = sum(t.numel() * t.element_size() for t in tensors if torch.is_tensor(t))
        count = self.files_to_write()
        free = free_space(self.folder.checkpoints)
        if free < size * count:
            print(f"warning: {self.folder.checkpoints} has {format_size(free)} free, but this "
                  f"run's checkpoints need about {format_size(size * count)} ({count} file"
                  f"{'s' * (count > 1)} of {format_size(size)}): the first save that does not "
                  "fit will stop it, keeping the previous checkpoint", flush=True)


def resume_command(checkpoint: PathLike) -> str:
    return f"python train.py with train.resume={shlex.quote(str(checkpoint))}"
