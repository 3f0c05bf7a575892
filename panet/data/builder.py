"""``make_episode_dataset``: one call from a dataset name and an episode setting to a Dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence, Tuple, Union

from torch.utils.data import Dataset

from panet.data.episodes import EpisodeDataset
from panet.data.folder import FolderSource
from panet.data.folds import N_FOLDS, split_classes
from panet.data.sampling import sample_episodes
from panet.data.sources import Source
from panet.data import synthetic
from panet.data.transforms import as_size
from panet.data.voc import VocSource

DATASETS = ("pascal", "coco", "synthetic", "folder")


def make_source(name: str, root: Union[str, Path], split: str, year: int = 2014,
                cache_dir: Optional[Union[str, Path]] = None,
                lists_dir: Optional[Union[str, Path]] = None) -> Source:
    """The ``Source`` of one split: ``pascal`` = the VOC2012 folder ``root``; ``synthetic`` =
    ``root/VOC2012`` of a generated root (both: ``lists_dir``, see ``VocSource``); ``coco`` = a
    COCO root (``year``, ``cache_dir``); ``folder`` = a dataset in the folder layout of
    ``panet.data.folder``."""
    if name == "pascal":
        return VocSource(root, split, lists_dir=lists_dir)
    if name == "folder":
        return FolderSource(root, split)
    if name == "synthetic":
        return VocSource(Path(root) / synthetic.VOC_DIR, split, synthetic.N_CLASSES,
                         synthetic.CLASS_NAMES, lists_dir=lists_dir)
    if name == "coco":
        from panet.data.coco import CocoSource  # pycocotools is only needed for COCO

        return CocoSource(root, split, year=year, cache_dir=cache_dir)
    raise ValueError(f"dataset name must be one of {DATASETS}, got {name!r}")


def make_episode_dataset(name: str, root: Union[str, Path], split: str, fold: int, ways: int,
                         shots: int, queries: int, n_episodes: int, seed: int, train: bool, *,
                         size: Union[int, Tuple[int, int]] = 417, year: int = 2014,
                         fold_style: str = "contiguous", n_folds: int = N_FOLDS,
                         test_classes: Optional[Sequence[Union[int, str]]] = None,
                         weak: str = "dense",
                         bbox_instance: str = "largest", scribble_dilation: int = 0,
                         keep_original_labels: bool = False, coco_labels: str = "class",
                         cache_dir: Optional[Union[str, Path]] = None,
                         lists_dir: Optional[Union[str, Path]] = None,
                         source: Optional[Source] = None) -> Dataset:
    """Episodes of a PASCAL-5i / COCO-20i / synthetic / folder-dataset class split (items: see
    ``panet.data.episodes``).

    ``train`` selects the split's training classes (and random flips), otherwise its test
    classes (``panet.data.folds.split_classes``: ``fold`` of ``n_folds``, or explicit
    ``test_classes``). The episode list is drawn here, up front, from ``seed`` (PROTOCOL §8).
    Options: ``size`` (int or (H, W)); ``fold_style`` ("contiguous" | "interleaved", COCO and
    folder datasets); ``year`` and ``cache_dir`` for COCO; ``lists_dir`` for PASCAL and
    synthetic; ``weak`` ("dense" | "scribble" | "bbox") with ``bbox_instance`` ("largest" |
    "random") and ``scribble_dilation`` (pixels); ``keep_original_labels`` adds the queries'
    original-size labels; ``coco_labels`` ("class": each image labelled for its own way's
    class only, as released | "episode": for all the episode's classes; PASCAL's full label
    maps are the same under both); ``source``: the split's ``Source`` when one is already built
    (``make_source`` of the same arguments), to share it between datasets (test runs). Unknown
    options raise ``TypeError``.
    """
    if fold_style != "contiguous" and name in ("pascal", "synthetic"):
        raise ValueError(f"fold_style {fold_style!r} is defined for COCO-20i and folder datasets; "
                         f"PASCAL-5i folds are contiguous")
    if seed < 0 or n_episodes < 0:
        raise ValueError(f"seed and n_episodes must be >= 0, got {seed} and {n_episodes}")
    if source is None:
        source = make_source(name, root, split, year, cache_dir, lists_dir)
    return episode_dataset(source, fold,
                           ways, shots, queries, n_episodes, seed, train, size=size,
                           fold_style=fold_style, n_folds=n_folds, test_classes=test_classes,
                           weak=weak, bbox_instance=bbox_instance,
                           scribble_dilation=scribble_dilation,
                           keep_original_labels=keep_original_labels, coco_labels=coco_labels)


def episode_dataset(source: Source, fold: int, ways: int, shots: int, queries: int,
                    n_episodes: int, seed: int, train: bool, *,
                    size: Union[int, Tuple[int, int]] = 417, fold_style: str = "contiguous",
                    n_folds: int = N_FOLDS,
                    test_classes: Optional[Sequence[Union[int, str]]] = None,
                    weak: str = "dense", bbox_instance: str = "largest",
                    scribble_dilation: int = 0, keep_original_labels: bool = False,
                    coco_labels: str = "class") -> EpisodeDataset:
    """``make_episode_dataset`` on a ``Source`` already built (e.g. one shared by several runs,
    or a masks-only ``VocSource``)."""
    classes = split_classes(source, train, fold, n_folds=n_folds, fold_style=fold_style,
                            test_classes=test_classes)
    episodes = sample_episodes(source.class_images(), classes, ways, shots, queries, n_episodes,
                               seed, describe=source.class_name)
    return EpisodeDataset(source, episodes, as_size(size), seed, train, weak=weak,
                          bbox_instance=bbox_instance, scribble_dilation=scribble_dilation,
                          keep_original_labels=keep_original_labels, coco_labels=coco_labels)
