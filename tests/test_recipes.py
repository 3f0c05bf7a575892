"""Training recipes beyond PANet's (train.optimizer, train.schedule, train.freeze_encoder,
train.grad_clip, a method's param_groups), each against a hand-computed expectation; PANet's
defaults build what PROTOCOL §5 says (SGD 1e-3 / 0.9 / 5e-4, lr x 0.1 at each milestone)."""

import math

import pytest
import torch
from torch import nn

from panet.models import PANet, build_encoder
from panet.settings import TrainSettings
from panet.training import build_optimization, train_step
from test_method import episode_batch


def small_model(seed=0):
    torch.manual_seed(seed)
    return PANet(build_encoder("small"))


def learning_rates(train, steps):
    """The learning rate of each step 0..steps-1 under `train`'s schedule."""
    optimization = build_optimization(small_model(), train)
    rates = []
    for _ in range(steps):
        rates.append(optimization.optimizer.param_groups[0]["lr"])
        optimization.optimizer.step()
        optimization.scheduler.step()
    return rates


def test_panets_defaults_are_protocol_5():
    model = small_model()
    optimization = build_optimization(model, TrainSettings())
    optimizer = optimization.optimizer
    assert type(optimizer) is torch.optim.SGD and len(optimizer.param_groups) == 1
    assert optimizer.defaults["lr"] == 1e-3 and optimizer.defaults["momentum"] == 0.9
    assert optimizer.defaults["weight_decay"] == 5e-4
    assert optimizer.param_groups[0]["params"] == list(model.parameters())  # every one, in order
    rates = learning_rates(TrainSettings(steps=30, milestones=(10, 20), lr=1.0), 30)
    assert rates == [1.0] * 10 + [pytest.approx(0.1)] * 10 + [pytest.approx(0.01)] * 10


@pytest.mark.parametrize("name,kind", [("sgd", torch.optim.SGD), ("adam", torch.optim.Adam),
                                       ("adamw", torch.optim.AdamW)])
def test_each_optimizer_is_built_with_the_settings(name, kind):
    train = TrainSettings(optimizer=name, lr=0.1, weight_decay=0.01)
    optimizer = build_optimization(small_model(), train).optimizer
    assert type(optimizer) is kind and optimizer.defaults["lr"] == 0.1
    assert optimizer.defaults["weight_decay"] == 0.01


def test_poly_and_cosine_schedules_follow_their_formulas():
    steps = 20
    poly = learning_rates(TrainSettings(schedule="poly", steps=steps, lr=0.5), steps)
    cosine = learning_rates(TrainSettings(schedule="cosine", steps=steps, lr=0.5), steps)
    for t in range(steps):
        assert poly[t] == pytest.approx(0.5 * (1 - t / steps) ** 0.9, rel=1e-12)
        assert cosine[t] == pytest.approx(0.5 * (1 + math.cos(math.pi * t / steps)) / 2,
                                          rel=1e-9, abs=1e-12)


def test_a_frozen_encoder_level_and_those_before_it_stay_fixed():
    model = small_model()
    train = TrainSettings(freeze_encoder="conv3", lr=0.1)
    optimization = build_optimization(model, train)
    stages = model.encoder.levels
    before = {name: [p.detach().clone() for p in stage.parameters()]
              for name, stage in stages.items()}
    updated = {id(p) for group in optimization.optimizer.param_groups for p in group["params"]}
    train_step(model, optimization.optimizer, episode_batch(), align_weight=1.0)
    for name, stage in stages.items():
        moved = [not torch.equal(a, b) for a, b in zip(stage.parameters(), before[name])]
        frozen = name in ("conv1", "conv2", "conv3")
        assert all(not m for m in moved) if frozen else all(moved), name
        assert all((id(p) in updated) != frozen for p in stage.parameters()), name
    everything = build_optimization(small_model(), TrainSettings(freeze_encoder="all"))
    assert not [p for group in everything.optimizer.param_groups for p in group["params"]]


def test_a_methods_own_parameter_groups_are_used():
    class TwoRates(PANet):
        def param_groups(self, train):
            return [{"params": self.encoder.parameters(), "lr": train.lr / 10},
                    {"params": [self.extra], "lr": train.lr}]

    model = TwoRates(build_encoder("small"))
    model.extra = nn.Parameter(torch.zeros(1))
    optimizer = build_optimization(model, TrainSettings(lr=0.1)).optimizer
    assert [group["lr"] for group in optimizer.param_groups] == [pytest.approx(0.01), 0.1]


@pytest.mark.parametrize("clip", [1e-3, 1e6])
def test_grad_clip_bounds_the_global_gradient_norm(clip):
    """With SGD at lr 1 (no momentum, no decay) a step moves the weights by minus the clipped
    gradient: its global norm is min(the gradient's norm, clip)."""
    batch = episode_batch()
    model, reference = small_model(), small_model()
    loss = train_step(reference, torch.optim.SGD(reference.parameters(), lr=0.0), batch, 1.0)
    norm = math.sqrt(sum(float(p.grad.pow(2).sum()) for p in reference.parameters()))
    start = [p.detach().clone() for p in model.parameters()]
    train_step(model, torch.optim.SGD(model.parameters(), lr=1.0), batch, 1.0, grad_clip=clip)
    moved = math.sqrt(sum(float((p.detach() - s).pow(2).sum())
                          for p, s in zip(model.parameters(), start)))
    assert moved == pytest.approx(min(norm, clip), rel=1e-4)
    assert loss["loss"] > 0
