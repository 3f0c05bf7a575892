"""Data pipeline: datasets on disk -> few-shot episodes (PROTOCOL §5-8, §10).

Modules: ``sources`` (per-image access interface), ``voc`` (PASCAL VOC source), ``coco`` (COCO
source), ``folder`` (your own dataset in a folder layout), ``folds`` (class tables, fold splits,
explicit test classes), ``sampling`` (episode lists), ``transforms``, ``weak`` (box / scribble
supports), ``episodes`` (the dataset and collate function), ``builder``
(``make_episode_dataset``, ``episode_dataset``), ``synthetic`` (generated data),
``voc_prepare`` (class lists, SBD instances), ``folder_prepare`` (checks and class lists of a
folder dataset), ``label_png`` (palette PNG io).
"""

from panet.data.builder import episode_dataset, make_episode_dataset, make_source
from panet.data.episodes import EpisodeDataset, collate_episodes
from panet.data.folds import PASCAL_CLASS_NAMES, fold_classes
from panet.data.sampling import Episode, sample_episodes

__all__ = ["episode_dataset", "make_episode_dataset", "make_source", "EpisodeDataset",
           "collate_episodes", "PASCAL_CLASS_NAMES", "fold_classes", "Episode", "sample_episodes"]
