"""Which episodes a test draws (``data.protocol``), and episode lists exchanged as files.

- ``panet`` (PASCAL, COCO, synthetic, folder): PANet's own sampling (``panet.data.sampling``).
- ``patnet`` (the default of deepglobe, isic2018, chestxray, fss1000): the episodes of PATNet's
  test.py (github.com/slei109/PATNet), drawn by ``reference_episodes``.
- ``hsnet`` (fss1000): HSNet's (github.com/juhongm999/hsnet) FSS-1000 benchmark. Its test
  episodes are drawn by the same rule as PATNet's (HSNet data/fss.py:81-96 and PATNet's copy);
  the protocols differ in what trains (HSNet: FSS-1000's 520 trn classes; PATNet: PASCAL VOC).

The reference rule (PATNet test.py:18 seeds every generator with ``fix_randseed(0)``, then
reads items 0, 1, ... in order, one process: data/dataset.py:37-41), with numpy's legacy global
generator (``RandomState``, whose streams numpy keeps fixed) seeded with ``seed``:

- deepglobe, isic2018, chestxray (K classes, 1-way 1-query): episode i shows class i mod K
  (deepglobe.py:80); its query is ``choice(candidates, 1, replace=False)[0]`` over the class's
  list (:83); supports repeat the same draw, keeping a draw that differs from the query, until S
  are kept (:84-88; two supports may be the same image).
- fss1000: episode i's query is the i-th image of the split (every image once, class by class;
  fss.py:82); supports repeat ``choice(range(1, 11), 1, replace=False)[0]`` = n, keeping
  ``<query folder>/<n>.jpg`` when it is not the query (fss.py:90-94).

``replace=False`` makes each draw a permutation of the whole list (numpy's legacy ``choice``),
so the calls are made exactly as PATNet makes them: another call pattern would shift the stream.

An *episode file* lists episodes one a line, image paths relative to ``data.root``: JSON lines
``{"class": name, "query": path, "supports": [path, ...]}`` (``.json`` / ``.jsonl``) or CSV with
the header ``class,query,support_1, ..., support_S`` (``.csv``); ``test.episodes_file``.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np

from panet.base.files import atomic_write
from panet.data.sampling import Episode
from panet.data.sources import Source

PROTOCOLS = ("panet", "patnet", "hsnet")
REFERENCE = ("patnet", "hsnet")  # drawn by reference_episodes
FSS_SHOT_NAMES = range(1, 11)  # an FSS-1000 class folder's images 1.jpg .. 10.jpg
EPISODE_FILE_SUFFIXES = (".csv", ".json", ".jsonl")


def reference_episodes(source: Source, shots: int, n_episodes: int, seed: int = 0
                       ) -> List[Episode]:
    """The first ``n_episodes`` 1-way ``shots``-shot 1-query episodes of PATNet's / HSNet's test
    (module docstring) on a ``panet.data.cdfss`` source."""
    rng = np.random.RandomState(seed)
    lists = source.class_images()
    if getattr(source, "every_query", False):
        queries = [(k, image_id) for k in source.class_ids for image_id in lists[k]]
        if n_episodes > len(queries):
            raise ValueError(f"the {source.name} split has {len(queries)} images, each the "
                             f"query of one episode: test.episodes must be at most "
                             f"{len(queries)}")
        return [_episode(k, q, _fss_supports(q, shots, rng, set(lists[k])))
                for k, q in queries[:n_episodes]]
    episodes = []
    for index in range(n_episodes):
        k = source.class_ids[index % len(source.class_ids)]
        candidates = lists[k]
        query = candidates[rng.choice(len(candidates), 1, replace=False)[0]]
        supports: List[str] = []
        while len(supports) < shots:
            drawn = candidates[rng.choice(len(candidates), 1, replace=False)[0]]
            if drawn != query:
                supports.append(drawn)
            elif len(candidates) == 1:
                raise ValueError(f"class {source.class_name(k)} has one image: no support can "
                                 "differ from the query")
        episodes.append(_episode(k, query, supports))
    return episodes


def _fss_supports(query: str, shots: int, rng: np.random.RandomState, known: set) -> List[str]:
    folder = query.rsplit("/", 1)[0]
    supports: List[str] = []
    while len(supports) < shots:
        drawn = f"{folder}/{rng.choice(FSS_SHOT_NAMES, 1, replace=False)[0]}.jpg"
        if drawn != query:
            if drawn not in known:
                raise FileNotFoundError(f"{drawn} is not in the class folder; the FSS-1000 "
                                        f"protocol draws supports among {folder}/1..10.jpg")
            supports.append(drawn)
    return supports


def _episode(class_id: int, query: str, supports: Sequence[str]) -> Episode:
    return Episode((class_id,), (tuple(supports),), ((query,),))


def relative_path(source: Source, image_id: str) -> str:
    """The image's file relative to the source's root, else its id."""
    path, root = source.image_path(image_id), getattr(source, "root", None)
    try:
        return path.relative_to(root).as_posix()
    except (AttributeError, TypeError, ValueError):
        return image_id


def write_episode_file(path: Path, rows: Sequence[Dict]) -> Path:
    """Write episodes (dicts: "class", "query", "supports") to an episode file."""
    path = Path(path)
    with atomic_write(path, "w") as out:
        if path.suffix == ".csv":
            shots = max(len(row["supports"]) for row in rows)
            writer = csv.writer(out, lineterminator="\n")
            writer.writerow(["class", "query"] + [f"support_{s}" for s in range(1, shots + 1)])
            writer.writerows([row["class"], row["query"], *row["supports"]] for row in rows)
        else:
            out.write("".join(json.dumps(row) + "\n" for row in rows))
    return path


def read_episode_rows(path: Path) -> List[Dict]:
    """The episodes of an episode file as dicts; one-line errors name a malformed line."""
    path = Path(path)
    if path.suffix not in EPISODE_FILE_SUFFIXES:
        raise ValueError(f"{path}: an episode file is .csv or .json/.jsonl (scripts/episodes.py)")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"cannot read episode file {path} ({error})") from None
    rows = []
    if path.suffix == ".csv":
        lines = list(csv.reader(text.splitlines()))
        if not lines or lines[0][:2] != ["class", "query"]:
            raise ValueError(f"{path}: the first line must be the header class,query,support_1,...")
        for number, line in enumerate(lines[1:], start=2):
            if not line:
                continue  # a blank line
            if len(line) < 3:
                raise ValueError(f"{path} line {number}: expected class,query,support_1,...")
            rows.append({"class": line[0], "query": line[1], "supports": line[2:]})
    else:
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                rows.append({"class": str(row["class"]), "query": str(row["query"]),
                             "supports": [str(s) for s in row["supports"]]})
            except (ValueError, KeyError, TypeError):
                raise ValueError(f"{path} line {number}: expected {{\"class\": ..., \"query\": "
                                 "..., \"supports\": [...]}") from None
    if not rows:
        raise ValueError(f"{path} lists no episode")
    shots = {len(row["supports"]) for row in rows}
    if len(shots) > 1:
        raise ValueError(f"{path}: episodes with {sorted(shots)} supports; one test has one "
                         "shot count")
    return rows


def read_episode_file(path: Path, source: Source) -> List[Episode]:
    """The 1-way 1-query episodes an episode file lists, on ``source`` (classes by name or id);
    a file naming classes or images the dataset lacks is refused before anything runs."""
    rows = read_episode_rows(path)
    names = getattr(source, "class_names", None) or {}
    by_name = {str(name): k for k, name in names.items()}
    by_name.update({str(k): k for k in source.class_ids})
    lists = source.class_images()
    ids_by_path = {k: {relative_path(source, i): i for i in lists[k]} for k in source.class_ids}
    unknown_classes = sorted({row["class"] for row in rows} - set(by_name))
    if unknown_classes:
        raise ValueError(f"{path} names classes this dataset lacks, e.g. {unknown_classes[:3]}")
    missing, episodes = [], []
    for row in rows:
        k = by_name[row["class"]]
        images = [row["query"], *row["supports"]]
        absent = [p for p in images if p not in ids_by_path[k]]
        if absent:
            missing.extend(f"{p} ({row['class']})" for p in absent)
            continue
        ids = [ids_by_path[k][p] for p in images]
        episodes.append(_episode(k, ids[0], ids[1:]))
    if missing:
        raise FileNotFoundError(f"{path} names {len(missing)} images that are not images of "
                                f"their class under data.root, e.g. {missing[:3]}; check "
                                "data.root and the file's paths (relative to data.root)")
    return episodes
