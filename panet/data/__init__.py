"""Data pipeline: datasets on disk (``sources`` and its ``voc``, ``coco``, ``folder``) ->
few-shot episodes (``folds``, ``sampling``, ``transforms``, ``weak``, ``episodes``, ``builder``);
PROTOCOL §5-8, §10."""

from panet.data.builder import episode_dataset, make_episode_dataset, make_source
from panet.data.episodes import EpisodeDataset, collate_episodes
from panet.data.folds import PASCAL_CLASS_NAMES, fold_classes
from panet.data.sampling import Episode, sample_episodes

__all__ = ["episode_dataset", "make_episode_dataset", "make_source", "EpisodeDataset",
           "collate_episodes", "PASCAL_CLASS_NAMES", "fold_classes", "Episode", "sample_episodes"]
