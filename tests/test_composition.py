"""What runs is what was asked (panet/config.py): named configs compose in any order, every value
given explicitly is applied over a checkpoint's stored settings (even one equal to a default),
and keys a script does not read are refused."""

import itertools
from dataclasses import fields

import pytest
import torch
from conftest import composed
from panet.base.errors import ConfigError
from panet.models import PANet, build_encoder
from panet.run.compose import named_config_files
from panet.settings import EpisodeSetting, ModelSettings, RunSettings, TestSettings, TrainSettings
from panet.weights.checkpoint import save_checkpoint

TRAIN, TEST = "train", "test"
NAMED = sorted(named_config_files())


@pytest.mark.parametrize("first,second", list(itertools.combinations(NAMED, 2)))
def test_named_configs_compose_in_any_order(first, second):
    """Both orders give one config, or both are refused because the two set one key to
    different values (they choose the same setting, e.g. 1shot and 5shot), unless one of them
    sets that key alone: it refines the other (resnet50 beside fast)."""
    outcomes = []
    for pair in ((first, second), (second, first)):
        try:
            outcomes.append(composed(TRAIN, pair))
        except ConfigError as error:
            outcomes.append(str(error).split(":")[0])  # which key, named in both orders alike
    values = named_config_files()
    shared = [key for key in values[first].keys() & values[second].keys()
              if values[first][key] != values[second][key]]
    single = [name for name in (first, second) if len(values[name]) == 1]
    if shared and len(single) != 1:
        assert all(isinstance(o, str) for o in outcomes), outcomes
        return
    assert outcomes[0] == outcomes[1]
    specific = single[0] if single else None
    for key in shared:
        section, name = key.split(".")
        assert outcomes[0][section][name] == values[specific][key], key


def test_dataset_configs_leave_the_test_split_to_val():
    """`voc` and `coco` choose the dataset only; `val` chooses the test split, in any order."""
    for dataset in ("voc", "coco"):
        assert "data.test_split" not in named_config_files()[dataset]
        for order in ((dataset, "val"), ("val", dataset)):
            assert composed(TEST, (*order, "notrain"))["data"]["test_split"] == "val"


def write_checkpoint(path, **data_changes):
    """A checkpoint whose stored data settings all differ from the defaults (valid for a
    folder dataset), with a small model; `data_changes` replace some of them."""
    data = {"name": "folder", "root": "/stored/root", "fold": 2, "n_folds": 5,
            "test_classes": [1, 2], "ways": 2, "shots": 5, "queries": 2, "size": 97,
            "train_split": "train", "test_split": "test", "year": 2017,
            "fold_style": "interleaved", "cache_dir": "/stored/cache",
            "lists_dir": "/stored/lists", "workers": 3, "weak": "bbox",
            "bbox_instance": "random", "scribble_dilation": 2, "coco_labels": "episode",
            "protocol": "panet",
            **data_changes}
    model = {"encoder": "small", "weights": None, "alpha": 20.0}
    config = {"seed": 7, "device": "cpu", "tf32": False, "data": data, "model": model,
              "train": TrainSettings().as_config(), "test": TestSettings().as_config()}
    net = PANet(build_encoder("small"))
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, [10])
    return save_checkpoint(path, step=3, model=net, optimizer=optimizer, scheduler=scheduler,
                           config=config), config


@pytest.fixture(scope="module")
def stored_checkpoint(tmp_path_factory):
    path, config = write_checkpoint(tmp_path_factory.mktemp("stored") / "final.pt")
    defaults = EpisodeSetting().as_config()
    assert all(defaults[key] != value for key, value in config["data"].items())
    return path, config


@pytest.fixture(scope="module")
def resumable_checkpoint(tmp_path_factory):
    """The same, as train.py writes them: trained on dense supports."""
    return write_checkpoint(tmp_path_factory.mktemp("resumable") / "last.pt", weak="dense")


def test_test_takes_the_checkpoints_settings_beneath_what_is_given(stored_checkpoint):
    path, stored = stored_checkpoint
    config = composed(TEST, **{"test": {"checkpoint": str(path)}})
    kept = {key: value for key, value in stored["data"].items() if key != "cache_dir"}
    assert {key: config["data"][key] for key in kept} == kept
    assert config["data"]["cache_dir"] is None  # a checkpoint supplies no place to write
    assert config["model"]["encoder"] == "small" and config["model"]["weights"] is None


@pytest.mark.parametrize("key", [f.name for f in fields(EpisodeSetting)])
def test_every_data_value_given_is_applied_even_a_default(stored_checkpoint, key):
    """data.<key>=<its default> on test.py with a checkpoint storing another value: the value
    given is tested (sacred lists a value as modified only when it differs from the default)."""
    path, stored = stored_checkpoint
    default = EpisodeSetting().as_config()[key]
    config = composed(TEST, **{"test": {"checkpoint": str(path)}, "data": {key: default}})
    assert config["data"][key] == default
    if key in ("fold", "n_folds", "fold_style"):
        assert config["data"]["test_classes"] is None  # an explicit fold replaces stored classes


def test_named_configs_equal_to_defaults_are_applied(stored_checkpoint):
    """`1shot` on a 5-shot checkpoint tests 1-shot; `voc` on a folder model tests PASCAL, its
    own splits and root (the checkpoint's dataset-specific keys give way)."""
    path, _ = stored_checkpoint
    config = composed(TEST, ("1shot", "voc"), **{"test": {"checkpoint": str(path)}})
    data = config["data"]
    assert data["shots"] == 1 and data["name"] == "pascal" and data["root"] == "data/VOC2012"
    assert data["test_split"] is None and data["lists_dir"] is None  # PASCAL's defaults
    assert EpisodeSetting.from_config(data).split(train=False) == "trainaug"


def test_a_checkpoint_architecture_cannot_change_at_test_time(stored_checkpoint):
    path, _ = stored_checkpoint
    with pytest.raises(ConfigError, match="model.encoder='vgg16': the checkpoint holds a model "
                                          "with model.encoder='small'"):
        composed(TEST, **{"test": {"checkpoint": str(path)}, "model": {"encoder": "vgg16"}})


@pytest.mark.parametrize("key", [f.name for f in fields(EpisodeSetting)])
def test_resume_applies_or_refuses_every_data_value_given(resumable_checkpoint, key):
    """Beside train.resume a data value is either one that may change (where the data is, how
    it is read: applied) or refused naming the checkpoint's value."""
    from panet.run.validation import RESUMABLE

    path, stored = resumable_checkpoint
    default = EpisodeSetting().as_config()[key]
    updates = {"train": {"resume": str(path)}, "data": {key: default}}
    if f"data.{key}" in RESUMABLE or default == stored["data"][key]:
        assert composed(TRAIN, **updates)["data"][key] == default
    else:
        with pytest.raises(ConfigError, match=rf"data\.{key}=.*: the checkpoint was trained "
                                              rf"with {stored['data'][key]!r}".replace("[", r"\[")):
            composed(TRAIN, **updates)


def test_resume_takes_the_checkpoints_seed_and_schedule(resumable_checkpoint):
    path, stored = resumable_checkpoint
    config = composed(TRAIN, **{"train": {"resume": str(path), "steps": 50000}})
    assert config["seed"] == 7 and config["train"]["steps"] == 50000
    assert config["data"]["shots"] == 5 and config["model"]["encoder"] == "small"


@pytest.mark.parametrize("script,key,value", [("train", "test.runs", 0),
                                              ("train", "test.checkpoint", "/nonexistent"),
                                              ("test", "train.steps", 3)])
def test_keys_of_the_other_script_are_refused(script, key, value):
    """train.py does not read test.* keys (and test.py not train.* keys): given on the command
    line, they would be silently ignored."""
    section, name = key.split(".")
    ex = TRAIN if script == "train" else TEST
    with pytest.raises(ConfigError, match=rf"{key}=.*{script}\.py does not read {section}\.\*"):
        composed(ex, ("notrain",) if script == "test" else (), **{section: {name: value}})


def test_every_settings_class_has_a_doc_and_a_rule_per_field():
    for kind in (EpisodeSetting, ModelSettings, TrainSettings, TestSettings, RunSettings):
        for field in fields(kind):
            assert field.metadata["doc"] and field.metadata["rule"].accepts(field.default), (
                kind.__name__, field.name)
