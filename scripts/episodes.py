"""Export the episodes of a test to a file another codebase (or test.episodes_file) can read.

    python scripts/episodes.py runs/dg --out episodes.csv          # class,query,support_1,...
    python scripts/episodes.py runs/dg/episodes.npz --out episodes.jsonl --run 0

The test is a run folder of test.py, its results.json or its episodes.npz; its episodes must be
1-way with 1 query (the cross-domain benchmark's). One episode a line, in the order drawn: its
class (the dataset's 1-based class id: PATNet's and HSNet's class k is our k + 1), the query,
the supports, each a path relative to the test's data.root (panet/data/protocols.py).
`python test.py with ... test.episodes_file=episodes.csv` evaluates the same episodes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from panet.data.protocols import EPISODE_FILE_SUFFIXES, write_episode_file
from panet.report.statistics import EpisodeRecords
from panet.run.folder import RunFolder


def records_path(path: Path) -> Path:
    """The episodes.npz of a run folder, of the results.json beside it, or `path` itself."""
    if path.is_dir():
        return RunFolder(path).records
    return RunFolder(path.parent).records if path.name == RunFolder.RESULTS else path


def episode_rows(records: EpisodeRecords, run: int) -> List[Dict]:
    """The episodes of `run`, in order, as (class, query, supports) rows; ValueError for a test
    of several ways or queries, or without that run."""
    chosen = records.sorted()
    keep = chosen.run == run
    if not keep.any():
        raise ValueError(f"the test has runs 0..{records.n_runs - 1}, not {run}")
    if chosen.class_ids.shape[1] != 1 or (chosen.query[keep] != 0).any():
        raise ValueError("the test's episodes are not 1-way with 1 query: an episode file holds "
                         "those only")
    return [{"class": str(int(classes[0])), "query": str(query),
             "supports": [str(p) for p in supports[0]]}
            for classes, query, supports in zip(chosen.class_ids[keep], chosen.query_paths[keep],
                                                chosen.support_paths[keep])]


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("test", type=Path, help="a test's run folder, results.json or episodes.npz")
    parser.add_argument("--out", type=Path, required=True,
                        help=f"the episode file to write ({' / '.join(EPISODE_FILE_SUFFIXES)})")
    parser.add_argument("--run", type=int, default=0, help="which run of the test (default 0)")
    args = parser.parse_args(argv)
    if args.out.suffix not in EPISODE_FILE_SUFFIXES:
        parser.error(f"--out must end in {' / '.join(EPISODE_FILE_SUFFIXES)}")
    if args.out.exists():
        parser.error(f"--out {args.out} exists; give another name or remove it")
    source = records_path(args.test)
    if not source.is_file():
        parser.error(f"{args.test}: no {RunFolder.RECORDS} (give a test.py run folder, its "
                     f"{RunFolder.RESULTS} or its {RunFolder.RECORDS})")
    try:
        rows = episode_rows(EpisodeRecords.load(source), args.run)
    except ValueError as error:
        print(f"error: {source}: {error}", file=sys.stderr)
        return 2
    print(f"wrote {len(rows)} episodes of run {args.run} to {write_episode_file(args.out, rows)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
