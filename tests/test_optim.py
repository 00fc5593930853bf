"""Learning-rate schedule against its closed form, and LARS against a direct reference step."""

import math

import pytest
import torch

from raycl.config import preset
from raycl.optim import LARS, build_optimizer, set_lr, warmup_cosine
from raycl.train import Schedule, build_model


def test_warmup_cosine_closed_form_first_middle_last():
    peak, total, warm = 2.0, 110, 10
    assert warmup_cosine(0, total, warm, peak) == pytest.approx(peak / warm)
    assert warmup_cosine(warm - 1, total, warm, peak) == pytest.approx(peak)
    assert warmup_cosine(warm, total, warm, peak) == pytest.approx(peak)
    middle = warm + (total - warm) // 2
    assert warmup_cosine(middle, total, warm, peak) == pytest.approx(peak / 2)
    assert warmup_cosine(total, total, warm, peak) == pytest.approx(0.0, abs=1e-12)
    t = 37
    expected = 0.5 * peak * (1 + math.cos(math.pi * (t - warm) / (total - warm)))
    assert warmup_cosine(t, total, warm, peak) == pytest.approx(expected)


def test_schedule_minimum_and_constant():
    assert warmup_cosine(100, 100, 0, 1.0, min_ratio=0.1) == pytest.approx(0.1)
    assert warmup_cosine(50, 100, 0, 1.0, schedule="constant") == 1.0


def test_linear_batch_scaling_and_run_schedule():
    cfg = preset("tiny").override({"optim.lr": 0.3, "train.batch_size": 512, "train.workers": 2,
                                   "optim.warmup_epochs": 1, "train.epochs": 3})
    assert cfg.effective_lr() == pytest.approx(0.3 * 512 / 256)
    s = Schedule.for_run(cfg, num_train=2100)  # 1050 per worker → 4 steps of 256
    assert (s.steps_per_epoch, s.total_steps, s.warmup_steps) == (4, 12, 4)
    assert s.lr(cfg, 3) == pytest.approx(cfg.effective_lr())


def _lrs(schedule, cfg, steps):
    return [schedule.lr(cfg, t) for t in steps]


def test_a_resumed_run_continues_its_schedules_without_a_jump():
    """Resumed with its own epochs a run continues exactly; with more, the rest of the schedule is
    stretched over the steps left (no jump, no second warm-up, the end value at the new end); a
    finished run resumed for more epochs stays at its final learning rate."""
    cfg = preset("tiny").override({"optim.lr": 1.0, "train.batch_size": 64, "train.workers": 1,
                                   "optim.warmup_epochs": 1, "train.epochs": 4, "optim.min_lr_ratio": 0.1})
    first = Schedule.for_run(cfg, num_train=640)  # 10 steps per epoch, 40 in all, 10 of warm-up
    same = Schedule.for_run(cfg, 640, {"step": 20, **first.state()})
    assert _lrs(same, cfg, range(41)) == _lrs(first, cfg, range(41))

    longer = cfg.override({"train.epochs": 8})
    ext = Schedule.for_run(longer, 640, {"step": 20, **first.state()})  # stopped at epoch 2 of 4
    lrs = _lrs(ext, longer, range(81))
    assert lrs[:21] == _lrs(first, cfg, range(21))  # the past is what it was
    assert all(b <= a for a, b in zip(lrs[20:], lrs[21:]))  # decays from there: no warm-up again
    assert lrs[80] == pytest.approx(0.1 * cfg.effective_lr()) and lrs[79] > lrs[80]
    jumps = [abs(b - a) for a, b in zip(lrs, lrs[1:])][10:]
    planned = _lrs(first, cfg, range(42))
    assert max(jumps) <= max(abs(b - a) for a, b in zip(planned, planned[1:]))
    assert ext.progress(50, 5).position() == pytest.approx(20 + 20 * 30 / 60)  # momentum: same map

    again = Schedule.for_run(longer.override({"train.epochs": 6}), 640, {"step": 50, **ext.state()})
    assert again.position(50) == pytest.approx(ext.position(50)) and again.position(60) == 40
    assert again.lr(cfg, 20) == lrs[20]  # the first stretch is kept

    done = Schedule.for_run(cfg.override({"train.epochs": 6}), 640, {"step": 40, **first.state()})
    assert {round(v, 12) for v in _lrs(done, cfg, range(40, 61))} == {round(first.lr(cfg, 40), 12)}
    old = Schedule.for_run(longer, 640, {"step": 20, "epochs": 4})  # a checkpoint without its schedule
    assert _lrs(old, longer, range(81)) == lrs


def reference_lars_step(p, g, buf, lr, momentum, wd, eta):
    g = g + wd * p
    trust = eta * p.norm() / g.norm()
    buf = momentum * buf + trust * g
    return p - lr * buf, buf


def test_lars_matches_reference_and_excludes_biases():
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(4, 3))
    b = torch.nn.Parameter(torch.randn(4))
    opt = LARS([{"params": [w]}, {"params": [b], "lars_exclude": True, "weight_decay": 0.0}],
               lr=0.5, momentum=0.9, weight_decay=1e-2)
    p_ref, buf = w.detach().clone(), torch.zeros(4, 3)
    b_ref, b_buf = b.detach().clone(), torch.zeros(4)
    for _ in range(3):
        gw, gb = torch.randn(4, 3), torch.randn(4)
        w.grad, b.grad = gw.clone(), gb.clone()
        opt.step()
        p_ref, buf = reference_lars_step(p_ref, gw, buf, 0.5, 0.9, 1e-2, 0.001)
        b_buf = 0.9 * b_buf + gb  # excluded: plain momentum SGD, no decay, no trust ratio
        b_ref = b_ref - 0.5 * b_buf
    torch.testing.assert_close(w.detach(), p_ref)
    torch.testing.assert_close(b.detach(), b_ref)


def test_build_optimizer_groups_for_lars():
    cfg = preset("tiny").override({"optim.optimizer": "lars"})
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    opt = build_optimizer(model, cfg)
    adapted, excluded = opt.param_groups
    assert len(adapted["params"]) == 1 and not adapted["lars_exclude"]
    assert len(excluded["params"]) == 3 and excluded["weight_decay"] == 0.0


@pytest.mark.parametrize("optimizer", ["adamw", "lars", "sgd"])
@pytest.mark.parametrize("fixed", [True, False])
def test_predictor_learns_at_its_own_rate(optimizer, fixed):
    cfg = preset("tiny", "byol").override({"optim.optimizer": optimizer, "optim.predictor_lr_scale": 10.0,
                                           "optim.predictor_fixed_lr": fixed})
    method = build_model(cfg)
    opt = build_optimizer(method, cfg)
    trainable = [id(p) for p in method.parameters() if p.requires_grad]
    in_groups = [id(p) for g in opt.param_groups for p in g["params"]]
    assert sorted(in_groups) == sorted(trainable)  # each trainable parameter once, targets left out
    predictor = {id(p) for p in method.predictor.parameters()}
    lr, peak = 0.001, 0.01  # mid-schedule, below the peak
    set_lr(opt, lr, peak)
    seen = set()
    for group in opt.param_groups:
        kinds = {id(p) in predictor for p in group["params"]}
        assert len(kinds) == 1  # a group is all predictor or all the rest
        is_predictor = kinds.pop()
        seen.add(is_predictor)
        expected = 10.0 * (peak if fixed else lr) if is_predictor else lr
        assert group["lr"] == pytest.approx(expected)
        if optimizer == "lars" and group.get("lars_exclude"):
            assert all(p.ndim <= 1 for p in group["params"]) and group["weight_decay"] == 0.0
    assert seen == {True, False}


def test_methods_without_a_predictor_keep_one_rate():
    cfg = preset("tiny", "simclr")
    opt = build_optimizer(build_model(cfg), cfg)
    set_lr(opt, 0.001, 0.01)
    assert [g["lr"] for g in opt.param_groups] == [0.001]
