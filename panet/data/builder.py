"""``make_episode_dataset``: from an episode setting to a Dataset of episodes, in one call."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

from panet.base.files import PathLike
from panet.data.datasets import DATASETS
from panet.data.episodes import EpisodeDataset
from panet.data.protocols import REFERENCE, read_episode_file, reference_episodes
from panet.data.sampling import Episode, sample_episodes
from panet.data.sources import Source


def make_source(setting, train: bool) -> Source:
    """The ``Source`` of the setting's training or test split: where a dataset is opened."""
    return DATASETS[setting.name].source(setting, setting.split(train))


def make_episode_dataset(setting, n_episodes: int, seed: int, train: bool, *,
                         keep_original_labels: bool = False,
                         source: Optional[Source] = None,
                         episodes_file: Optional[PathLike] = None) -> EpisodeDataset:
    """Episodes of ``setting`` (``panet.settings.EpisodeSetting``; items: ``panet.data.episodes``).

    ``train``: the training classes on the training split (random flips, dense supports), else
    the test classes on the test split (``panet.data.folds.split_classes``). The episode list is
    drawn up front from ``seed`` (PROTOCOL §8; ``reference_episodes`` at test time under a
    reference protocol) or read from ``episodes_file``. ``keep_original_labels`` adds the
    queries' original-size labels; ``source``: that split's source when already built.
    """
    return episode_dataset(source if source is not None else make_source(setting, train),
                           setting, n_episodes, seed, train, keep_original_labels, episodes_file)


def episode_dataset(source: Source, setting, n_episodes: int, seed: int, train: bool,
                    keep_original_labels: bool = False,
                    episodes_file: Optional[PathLike] = None) -> EpisodeDataset:
    """``make_episode_dataset`` on a ``Source`` already built (e.g. a masks-only ``VocSource``)."""
    episodes = draw_episodes(source, setting, n_episodes, seed, train, episodes_file)
    if train:
        setting = setting.replace(weak="dense")  # weak supports are a test-time setting
    return EpisodeDataset(source, episodes, setting, seed, train, keep_original_labels)


def draw_episodes(source: Source, setting, n_episodes: int, seed: int, train: bool,
                  episodes_file: Optional[PathLike] = None) -> List[Episode]:
    """The episode list of ``make_episode_dataset``; an error says why it cannot be drawn."""
    if episodes_file is not None:
        return read_episode_file(Path(episodes_file).expanduser(), source)
    if setting.episode_rule in REFERENCE and not train:
        return reference_episodes(source, setting.shots, n_episodes, seed)
    return sample_episodes(source.class_images(), setting.classes(source, train), setting.ways,
                           setting.shots, setting.queries, n_episodes, seed,
                           describe=source.class_name)
