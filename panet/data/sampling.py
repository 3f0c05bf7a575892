"""Episode sampling (PROTOCOL §8): a run's whole episode list, drawn up front from its seed.

Shorthand: W ways, S shots, Q queries per episode; N_c the queries of way c (sum N_c = Q).

One ``numpy.random.Generator(seed)`` first draws N_c (once per dataset, each query assigned to a
uniformly chosen way, as the released code does), then every episode in order, so a list of n
episodes is the prefix of any longer list drawn with the same seed and inputs.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable, List, Mapping, Sequence, Tuple

import numpy as np


@dataclass(frozen=True)
class Episode:
    """One episode in global class ids: ``class_ids`` (W), ``support_ids`` (W x S),
    ``query_ids`` (W lists, N_c ids for way c, showing class ``class_ids[c]``)."""

    class_ids: Tuple[int, ...]
    support_ids: Tuple[Tuple[str, ...], ...]
    query_ids: Tuple[Tuple[str, ...], ...]

    def queries(self) -> List[Tuple[int, str]]:
        """(way, image id) of the Q queries, way by way."""
        return [(way, image_id) for way, ids in enumerate(self.query_ids) for image_id in ids]


def queries_per_way(ways: int, queries: int, rng: np.random.Generator) -> List[int]:
    """N_c for c in 0..W-1: each of the Q queries goes to a uniformly drawn way."""
    return np.bincount(rng.integers(0, ways, size=queries), minlength=ways).tolist()


def usable_classes(class_images: Mapping[int, Sequence[str]], classes: Sequence[int],
                   needed: int, ways: int,
                   describe: Callable[[int], str] = str) -> List[int]:
    """The classes of ``classes`` with at least ``needed`` images, ascending; the others are
    left out with a warning naming them; fewer than ``ways`` left is an error."""
    kept = [c for c in sorted(classes) if len(class_images.get(c, ())) >= needed]
    dropped = [c for c in sorted(classes) if c not in kept]
    if dropped:
        warnings.warn("left out of the episodes (fewer than S + N_c = "
                      f"{needed} images): "
                      + ", ".join(f"class {describe(c)} with {len(class_images.get(c, ()))}"
                                  for c in dropped), stacklevel=2)
    if len(kept) < ways:
        raise ValueError(f"only {len(kept)} classes have the {needed} images an episode needs "
                         f"per class, fewer than the {ways} ways; use fewer shots/queries/ways "
                         f"or a larger split")
    return kept


def sample_episodes(class_images: Mapping[int, Sequence[str]], classes: Sequence[int],
                    ways: int, shots: int, queries: int, n_episodes: int, seed: int,
                    describe: Callable[[int], str] = str) -> List[Episode]:
    """Draw ``n_episodes`` episodes over ``classes`` (PROTOCOL §8): per episode W distinct
    classes uniformly from the usable ones, then for way c S + N_c distinct images uniformly
    from its class's sorted list; the first S are the support, the rest the queries (so a
    support is never a query of its way)."""
    rng = np.random.default_rng(seed)
    n_query = queries_per_way(ways, queries, rng)
    kept = usable_classes(class_images, classes, shots + max(n_query), ways, describe)
    lists = {c: sorted(class_images[c]) for c in kept}
    episodes = []
    for _ in range(n_episodes):
        chosen = [kept[i] for i in rng.choice(len(kept), size=ways, replace=False)]
        supports, query_ids = [], []
        for class_id, n_c in zip(chosen, n_query):
            picks = rng.choice(len(lists[class_id]), size=shots + n_c, replace=False)
            ids = tuple(lists[class_id][i] for i in picks)
            supports.append(ids[:shots])
            query_ids.append(ids[shots:])
        episodes.append(Episode(tuple(chosen), tuple(supports), tuple(query_ids)))
    return episodes
