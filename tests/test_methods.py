"""Each method's machinery in one process: momentum schedule, EMA, queues, shuffled BN, SwAV's
prototypes, and the config errors of the method fields."""

import math

import pytest
import torch
from torch import nn

from support import EXERCISE, make_views

from raycl.config import ConfigError, preset
from raycl.methods import METHODS, Progress, method_class, method_spec
from raycl.methods.momentum import KeyQueue, ema_update, momentum_at, shuffled_forward
from raycl.optim import build_optimizer
from raycl.train import build_model, train_step


def _cfg(method, **overrides):
    return preset("tiny", method).override({"train.batch_size": 16, **overrides}).validate()


def _views(method, b=8, seed=0):
    return make_views(_cfg(method), b, seed)


# --------------------------------------------------------------------------- momentum schedule
def test_byol_momentum_schedule_closed_form():
    base, total = 0.996, 1000
    assert momentum_at(0, total, base, "cosine") == pytest.approx(base)
    assert momentum_at(500, total, base, "cosine") == pytest.approx(1 - (1 - base) / 2)
    assert momentum_at(total, total, base, "cosine") == pytest.approx(1.0)
    k = 317  # τ = 1 − (1 − τ_base)(cos(πk/K) + 1)/2
    assert momentum_at(k, total, base, "cosine") == pytest.approx(
        1 - (1 - base) * (math.cos(math.pi * k / total) + 1) / 2)
    assert momentum_at(k, total, 0.999, "constant") == 0.999


def test_ema_update_formula():
    torch.manual_seed(0)
    online, target = nn.Linear(4, 3), nn.Linear(4, 3)
    old = [p.clone() for p in target.parameters()]
    ema_update(target, online, 0.9)
    for t, o, before in zip(target.parameters(), online.parameters(), old):
        torch.testing.assert_close(t, 0.9 * before + 0.1 * o)


def test_key_queue_is_fifo_and_wraps():
    q = KeyQueue(6, 2)
    batches = [torch.full((2, 2), float(i)) for i in range(4)]
    for b in batches[:3]:
        q.push(b)
    assert q.keys[:, 0].tolist() == [0, 0, 1, 1, 2, 2] and int(q.ptr) == 0
    q.push(batches[3])  # overwrites the oldest
    assert q.keys[:, 0].tolist() == [3, 3, 1, 1, 2, 2] and int(q.ptr) == 2
    with pytest.raises(ValueError, match="multiple"):
        q.push(torch.zeros(4, 2))


# --------------------------------------------------------------------------- shuffled BN
class _Recorder(nn.Module):
    """BN (batch statistics) that remembers which images formed each BN batch."""

    def __init__(self):
        super().__init__()
        self.bn = nn.BatchNorm1d(1, affine=False)
        self.batches = []

    def forward(self, x):
        self.batches.append(x[:, 0].clone())
        return self.bn(x)


def test_shuffled_bn_feeds_keys_in_other_groups_and_undoes_the_shuffle():
    x = torch.arange(16, dtype=torch.float64).view(16, 1) ** 1.5  # image i is identified by x[i]
    enc = _Recorder().double()
    local, everything = shuffled_forward(enc, x, groups=2, generator=torch.Generator().manual_seed(3))
    # BN groups are not the query order's sub-batches: the positive's group statistics differ
    query_groups = [set(x[:8, 0].tolist()), set(x[8:, 0].tolist())]
    key_groups = [set(b.tolist()) for b in enc.batches]
    assert len(key_groups) == 2 and all(len(g) == 8 for g in key_groups)
    assert all(kg not in query_groups for kg in key_groups)
    # reference: BN over each group of the permuted batch, then back to the original order
    perm = torch.randperm(16, generator=torch.Generator().manual_seed(3))
    ref = torch.empty_like(x)
    for g in range(2):
        idx = perm[g * 8:(g + 1) * 8]
        xs = x[idx]
        ref[idx] = (xs - xs.mean()) / torch.sqrt(xs.var(unbiased=False) + 1e-5)
    torch.testing.assert_close(local, ref)
    torch.testing.assert_close(everything, ref)


def test_moco_keys_use_the_configured_number_of_bn_groups(monkeypatch):
    import raycl.methods.moco as moco

    groups = []
    real = moco.shuffled_forward
    monkeypatch.setattr(moco, "shuffled_forward",
                        lambda enc, x, g, gen: groups.append(g) or real(enc, x, g, gen))
    for n, expected in ((4, 4), (0, 2)):  # 0: one group per worker, at least 2
        model = build_model(_cfg("moco", **{"method.key_bn_groups": n, "method.queue_size": 64}))
        model.before_step(Progress(0, 0, 1, 1))
        model(_views("moco", b=16))
        assert groups[-1] == expected


def test_shuffled_bn_rejects_groups_that_do_not_fit():
    with pytest.raises(ValueError, match="BN groups"):
        shuffled_forward(nn.Identity(), torch.zeros(6, 1), 4, torch.Generator())


# --------------------------------------------------------------------------- whole methods
@pytest.mark.parametrize("method", METHODS)
def test_every_trainable_parameter_learns(method):
    cfg = _cfg(method, **EXERCISE.get(method, {}))
    model = build_model(cfg)
    out = model(make_views(cfg, 8))
    assert torch.isfinite(out["loss"])
    out["loss"].backward()
    for name, p in model.named_parameters():
        frozen = any(p is t for pair in model.momentum_pairs() for t in pair[0].parameters())
        assert p.requires_grad != frozen, name  # momentum networks stay out of DDP and optimizers
        assert (p.grad is None) == frozen, name
        if not frozen:
            assert p.grad.abs().sum() > 0, name


def test_moco_pushes_the_batch_keys_and_moves_the_key_encoder():
    cfg = _cfg("moco", **{"method.queue_size": 32, "method.momentum": 0.9})
    model = build_model(cfg)
    opt = build_optimizer(model, cfg)
    views = _views("moco")
    with torch.no_grad():
        keys, _ = model.keys(views[1])  # what the first step will compute (same seed and step)
    old_key = [p.clone() for p in model.key_backbone.parameters()]
    out = train_step(model, opt, views, model, Progress(0, 0, 10, 10))
    assert out["loss"] > 0 and 0 <= out["pretext_top1"] <= 1
    torch.testing.assert_close(model.queue.keys[:8], nn.functional.normalize(keys, dim=1))
    assert int(model.queue.ptr) == 8
    for k, q, before in zip(model.key_backbone.parameters(), model.backbone.parameters(), old_key):
        torch.testing.assert_close(k, 0.9 * before + 0.1 * q)


def test_byol_target_follows_the_cosine_ema():
    cfg = _cfg("byol", **{"method.momentum": 0.9})
    model = build_model(cfg)
    opt = build_optimizer(model, cfg)
    old_target = [p.clone() for p in model.target_head.parameters()]
    progress = Progress(3, 0, 10, 10)
    train_step(model, opt, _views("byol"), model, progress)
    tau = 1 - 0.1 * (math.cos(math.pi * 3 / 10) + 1) / 2
    for t, o, before in zip(model.target_head.parameters(), model.head.parameters(), old_target):
        torch.testing.assert_close(t, tau * before + (1 - tau) * o)


def test_swav_prototypes_frozen_in_first_epoch_then_learn():
    cfg = _cfg("swav", **{"method.freeze_prototypes_epochs": 1})
    model = build_model(cfg)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    model.normalize_prototypes()
    before = model.prototypes.weight.clone()
    train_step(model, opt, _views("swav"), model, Progress(0, 0, 2, 4))
    torch.testing.assert_close(model.prototypes.weight, before)
    train_step(model, opt, _views("swav", seed=1), model, Progress(2, 1, 2, 4))
    assert not torch.allclose(model.prototypes.weight, before)
    model.normalize_prototypes()
    torch.testing.assert_close(model.prototypes.weight.norm(dim=1), torch.ones(cfg.method.prototypes))


def test_swav_queue_joins_sinkhorn_once_full(monkeypatch):
    """Sinkhorn sees the batch alone until the queue is full, then the queue's scores on the current
    prototypes stacked above the batch's (SwAV's code: queue first, codes of the batch kept)."""
    import raycl.methods.swav as swav

    seen = []
    real = swav.sinkhorn
    monkeypatch.setattr(swav, "sinkhorn", lambda scores, *a: seen.append(scores.clone()) or real(scores, *a))
    cfg = _cfg("swav", **{"method.queue_size": 16, "method.queue_start_epoch": 0})
    model = build_model(cfg)
    for step in range(3):
        model.before_step(Progress(step, 0, 3, 3))
        if step == 2:
            queued = model.queue.clone()  # full now: 16 rows of each of the two large views
        model(_views("swav", seed=step))
    assert [s.shape[0] for s in seen] == [8, 8, 8, 8, 24, 24]  # two large views per step
    for view, scores in enumerate(seen[4:]):
        torch.testing.assert_close(scores[:16], queued[view] @ model.prototypes.weight.T)
    assert model.queue.shape == (2, 16, cfg.model.proj_out_dim)
    assert int(model.queue_rows) == 24 and model.queue.abs().sum(dim=2).gt(0).all()


def test_swav_needs_all_its_views():
    model = build_model(_cfg("swav"))
    with pytest.raises(ValueError, match="2 large \\+ 2 small"):
        model(_views("simclr"))


# --------------------------------------------------------------------------- bad inputs
def _config_error(method, **overrides) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        preset("tiny", method).override(overrides).validate()
    return info.value


def test_moco_queue_must_be_a_multiple_of_the_global_batch():
    e = _config_error("moco", **{"method.queue_size": 1000, "train.batch_size": 128})
    assert e.field == "method.queue_size" and "1000" in str(e) and "train.batch_size = 128" in str(e)
    assert _config_error("moco", **{"method.queue_size": 0}).field == "method.queue_size"


@pytest.mark.parametrize("m", [-0.1, 1.5])
def test_momentum_must_be_in_unit_interval(m):
    e = _config_error("byol", **{"method.momentum": m})
    assert e.field == "method.momentum" and "[0, 1]" in str(e)


def test_swav_field_errors():
    assert _config_error("swav", **{"method.prototypes": 1}).field == "method.prototypes"
    e = _config_error("swav", **{"method.epsilon": 0.0})
    assert e.field == "method.epsilon" and "> 0" in str(e)
    e = _config_error("swav", **{"augment.small_crop_size": 40})
    assert e.field == "augment.small_crop_size" and "augment.crop_size = 32" in str(e)
    e = _config_error("byol", **{"augment.small_crops": 2})
    assert e.field == "augment.small_crops" and "simclr, swav" in str(e)


def test_unknown_optimizer_and_method():
    e = _config_error("byol", **{"optim.optimizer": "adagrad"})
    assert e.field == "optim.optimizer" and "lars" in str(e)
    with pytest.raises(ConfigError, match="method.name"):
        preset("tiny", "simsiam")


def test_presets_carry_each_papers_defaults():
    assert preset("imagenet", "moco").method.queue_size == 65536
    assert (preset("cifar10", "moco").method.temperature, preset("cifar10", "mocov2").method.temperature
            ) == (0.07, 0.2)
    v2 = preset("cifar10", "mocov2")
    assert (v2.model.proj_depth, v2.augment.recipe, v2.optim.schedule) == (2, "moco_v2", "cosine")
    assert preset("cifar10", "moco").optim.schedule == "step"
    byol = preset("imagenet", "byol")
    assert (byol.method.momentum, byol.method.momentum_schedule, byol.optim.optimizer) == (
        0.996, "cosine", "lars")
    assert (byol.optim.predictor_lr_scale, byol.optim.predictor_fixed_lr) == (1.0, False)
    swav = preset("imagenet", "swav")
    assert (swav.method.epsilon, swav.method.sinkhorn_iters, swav.method.prototypes,
            swav.augment.small_crops, swav.augment.small_crop_size) == (0.05, 3, 3000, 6, 96)
    assert (preset("cifar10", "simclrv2").model.proj_depth,
            preset("cifar10", "simclrv2").model.finetune_from) == (3, 1)


# --------------------------------------------------------------------------- specs
@pytest.mark.parametrize("method", METHODS)
def test_spec_traits_match_the_class(method):
    cfg = _cfg(method)
    model = build_model(cfg)
    spec = method_spec(method)
    assert model.name == spec.name == method and method_class(method).spec is spec
    assert bool(model.predictor_parameters()) == spec.traits.predictor
    assert model.num_views == len(make_views(cfg, 2))
    names = [o.name for o in spec.options]
    assert all(n.isidentifier() for n in names) and len(set(names)) == len(names)
    for scale in ("tiny", "cifar10", "imagenet"):  # every preset of every method is valid
        preset(scale, method).override({"data.path": "/data"} if scale == "imagenet" else {}).validate()


@pytest.mark.parametrize("method", METHODS)
def test_momentum_pairs_share_the_online_architecture(method):
    model = build_model(_cfg(method, **EXERCISE.get(method, {})))
    for target, online in model.momentum_pairs():
        assert [n for n, _ in target.named_parameters()] == [n for n, _ in online.named_parameters()]
        assert not any(p.requires_grad for p in target.parameters())
