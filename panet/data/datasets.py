"""The registry of datasets episodes can come from, by config name (`data.name`): how to open a
split as a `panet.data.sources.Source`, default splits, folds, what `data.root` holds. A new
dataset is one `Source` module, one line here and a named config (README, "Layout").
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple

from panet.data import cdfss, synthetic
from panet.data.folder import ALL_SPLIT, FolderSource
from panet.data.folds import FOLD_STYLES, N_FOLDS
from panet.data.sources import Source
from panet.data.voc import VocSource


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset. `source(setting, split)`: its `Source` (from `panet.settings.EpisodeSetting`).
    `root`: what data.root is. `train_split` / `test_split`: the defaults of data.train_split /
    data.test_split (the released protocol tests on the training split). `n_folds`: the
    benchmark's fold count (None: any); `fold_styles`: its class splits; `lists`: whether it
    reads data.lists_dir; `protocol`: the default data.protocol, `protocols` the ones it has;
    `shared_classes`: class k is one class in every split (not so in FSS-1000)."""

    source: Callable[[Any, str], Source]
    root: str
    train_split: str
    test_split: str
    n_folds: Optional[int] = N_FOLDS
    fold_styles: Tuple[str, ...] = ("contiguous", "all")
    lists: bool = True
    protocol: str = "panet"
    protocols: Tuple[str, ...] = ("panet",)
    shared_classes: bool = True


def _pascal(setting: Any, split: str) -> Source:
    return VocSource(setting.root_path, split, lists_dir=setting.lists_dir)


def _synthetic(setting: Any, split: str) -> Source:
    return VocSource(setting.root_path / synthetic.VOC_DIR, split, synthetic.N_CLASSES,
                     synthetic.CLASS_NAMES, lists_dir=setting.lists_dir)


def _coco(setting: Any, split: str) -> Source:
    from panet.data.coco import CocoSource  # pycocotools is only needed for COCO

    return CocoSource(setting.root_path, split, year=setting.year, cache_dir=setting.cache_dir)


def _folder(setting: Any, split: str) -> Source:
    return FolderSource(setting.root_path, split)


def _fss1000(setting: Any, split: str) -> Source:
    return cdfss.Fss1000Source(setting.root_path, split, setting.lists_dir)


def _target(source_class: type, root: str, **kwargs) -> DatasetSpec:
    """A cross-domain target (panet.data.cdfss): one test split, every class tested."""
    root = f"{root} (download: {cdfss.DOWNLOADS[source_class.name]})"
    defaults = dict(train_split="test", test_split="test", n_folds=None, fold_styles=("all",),
                    lists=False, protocol="patnet", protocols=("patnet", "panet"))
    kwargs.setdefault("source", lambda setting, split: source_class(setting.root_path, split))
    return DatasetSpec(root=root, **{**defaults, **kwargs})


DATASETS: Dict[str, DatasetSpec] = {
    "pascal": DatasetSpec(_pascal, "the VOC2012 folder (JPEGImages/, SegmentationClassAug/, "
                                   "ImageSets/)", train_split="trainaug", test_split="trainaug"),
    "coco": DatasetSpec(_coco, "the COCO folder (annotations/, train2014/, val2014/)",
                        train_split="train", test_split="train", fold_styles=FOLD_STYLES,
                        lists=False),
    "synthetic": DatasetSpec(_synthetic, "the folder written by scripts/make_synthetic.py "
                                         "(VOC2012/, coco/)",
                             train_split="trainaug", test_split="val"),
    "folder": DatasetSpec(_folder, "your dataset folder (images/, masks/, classes.txt; see the "
                                   "README)", train_split=ALL_SPLIT, test_split=ALL_SPLIT,
                          n_folds=None, fold_styles=FOLD_STYLES),
    "deepglobe": _target(cdfss.DeepglobeSource, cdfss.DeepglobeSource.LAYOUT),
    "isic2018": _target(cdfss.IsicSource, cdfss.IsicSource.LAYOUT),
    "chestxray": _target(cdfss.ChestXraySource, cdfss.ChestXraySource.LAYOUT),
    "fss1000": _target(cdfss.Fss1000Source, cdfss.Fss1000Source.LAYOUT + "; class lists in "
                       "data.lists_dir (default <root>/splits/{trn,val,test}.txt)",
                       source=_fss1000, lists=True, train_split="trn",
                       protocols=("patnet", "hsnet", "panet"), shared_classes=False),
}


def dataset_root_problem(name: str, root: Path) -> Optional[str]:
    """Why `root` cannot be dataset `name`'s data.root (it is no folder), or None."""
    if root.is_dir():
        return None
    return f"no such folder; it must be {DATASETS[name].root if name in DATASETS else 'a folder'}"
