"""Evaluation protocols: label subsets, linear probe, fine-tuning / distillation, transformation probe,
``raycl.evaluate`` on a checkpoint (in-process) and ``raycl.run(evaluate=...)`` end to end (Ray)."""

import math
import os

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import raycl
from raycl.config import ConfigError, preset
from raycl.data.listing import hashed_split
from raycl.protocols import (
    EVALUATION,
    apply_transform,
    distill,
    label_subset,
    linear_probe,
    parse_protocols,
    predict,
    save_subset,
    subset_file,
    transformation_probe,
)


# ------------------------------------------------------------------ label subsets
def test_label_subsets_balanced_deterministic_nested(tmp_path):
    labels = np.repeat(np.arange(5), [200, 150, 120, 300, 230])  # imbalanced, N = 1000
    rng = np.random.default_rng(3)
    labels = labels[rng.permutation(len(labels))]
    for fraction in (0.01, 0.1):
        idx = label_subset(labels, fraction, seed=7)
        expected = max(1, math.floor(fraction * len(labels) / 5 + 0.5))
        assert np.bincount(labels[idx], minlength=5).tolist() == [expected] * 5
        assert len(np.unique(idx)) == len(idx) and np.all(np.diff(idx) > 0)
        assert np.array_equal(idx, label_subset(labels, fraction, seed=7))  # same seed, same set
        assert not np.array_equal(idx, label_subset(labels, fraction, seed=8))
    small, big = label_subset(labels, 0.01, 7), label_subset(labels, 0.1, 7)
    assert set(small) <= set(big)  # nested
    assert np.array_equal(label_subset(labels, 1.0, 7), np.arange(len(labels)))
    # drawn from the training part only: disjoint from the validation split
    train, val = hashed_split([str(i) for i in range(len(labels))], labels, 0.1, seed=0)
    picked = train[label_subset(labels[train], 0.1, 0)]
    assert not set(picked) & set(val)
    path = save_subset(str(tmp_path), big, 10, 7)
    assert path.endswith(subset_file(10, 7)) and np.array_equal(np.load(path), big)
    with pytest.raises(ValueError, match="fraction"):
        label_subset(labels, 0.0, 0)


def test_protocol_names_and_settings_are_validated():
    got = parse_protocols(["knn", "random_linear", "finetune10", "distill1", "knn"])
    assert [p.name for p in got] == ["knn", "random_linear", "finetune10", "distill1"]
    assert got[1].random and got[2].fraction == 0.1 and got[3].base == "distill"
    for bad in ("linaer", "finetune0", "finetune101", "random_"):
        with pytest.raises(ConfigError) as err:
            parse_protocols([bad])
        assert err.value.field == "protocols" and err.value.value == bad
        assert "knn" in err.value.allowed
    cfg = preset("tiny")
    with pytest.raises(ConfigError) as err:
        cfg.override({"eval.linear_layer": 3}).validate()  # tiny head has 2 layers
    assert err.value.field == "eval.linear_layer"
    with pytest.raises(ConfigError, match="eval.transform_tasks"):
        cfg.override({"transform_tasks": ["rotation", "blur"]}).validate()
    with pytest.raises(ConfigError, match="eval.distill_alpha"):
        cfg.override({"distill_alpha": 1.5}).validate()
    with pytest.raises(ConfigError, match="eval.linear_weight_decays"):
        cfg.override({"linear_weight_decays": []}).validate()


# ------------------------------------------------------------------ linear probe
def _clusters(n, dim, classes, seed, spread=4.0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, dim, generator=torch.Generator().manual_seed(99)) * spread
    y = torch.randint(0, classes, (n,), generator=g)
    return centres[y] + torch.randn(n, dim, generator=g), y


def test_linear_probe_separable_and_random_labels():
    train, val, test = (_clusters(n, 32, 6, s) for n, s in ((600, 1), (200, 2), (400, 3)))
    res = linear_probe(train, val, 6, weight_decays=(0.0, 1e-2), steps=100, test=test)
    assert res["val"]["top1"] > 0.98 and res["test"]["top1"] > 0.98
    assert res["test"]["top5"] == 1.0 and res["weight_decay"] in (0.0, 1e-2)

    g = torch.Generator().manual_seed(5)
    shuffled = [(x, torch.randint(0, 6, (len(x),), generator=g)) for x, _ in (train, val, test)]
    noise = linear_probe(*shuffled[:2], 6, weight_decays=(1e-3, 1e-1), steps=100, test=shuffled[2])
    chance = 1 / 6
    sd = math.sqrt(chance * (1 - chance) / len(test[0]))
    assert abs(noise["test"]["top1"] - chance) < 4 * sd


# ------------------------------------------------------------------ distillation
class _ColourTeacher(nn.Module):
    """A perfect teacher: the class is the dominant colour channel."""

    def forward(self, images):
        return images.float().mean(dim=(2, 3)) / 4.0


class _PooledStudent(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Sequential(nn.Linear(3, 16), nn.ReLU(), nn.Linear(16, 3))

    def forward(self, images):
        return self.fc(images.float().mean(dim=(2, 3)) / 255.0 * 4 - 2)


def _colour_images(n, seed):
    g = torch.Generator().manual_seed(seed)
    base = torch.randint(0, 120, (n, 3, 1, 1), generator=g)
    cls = torch.randint(0, 3, (n,), generator=g)
    base[torch.arange(n), cls] += 120
    return (base + torch.randint(0, 10, (n, 3, 8, 8), generator=g)).clamp(0, 255).to(torch.uint8)


def test_distillation_recovers_a_perfect_teacher():
    teacher = _ColourTeacher()
    images, held_out = _colour_images(384, 0), _colour_images(256, 1)
    target = predict(teacher, held_out).argmax(1)
    torch.manual_seed(0)
    student = distill(teacher, _PooledStudent(), images, temperature=2.0, epochs=12, batch_size=64,
                      lr=2.0, seed=0)
    agree = (predict(student, held_out).argmax(1) == target).float().mean().item()
    assert agree > 0.95
    # with the labelled loss mixed in (labels = the teacher's on a small subset)
    labelled = torch.arange(0, 384, 10)
    torch.manual_seed(0)
    mixed = distill(teacher, _PooledStudent(), images, labelled,
                    predict(teacher, images[labelled]).argmax(1), alpha=0.5, epochs=12,
                    batch_size=64, lr=2.0, seed=0)
    assert (predict(mixed, held_out).argmax(1) == target).float().mean().item() > 0.95


# ------------------------------------------------------------------ transformation probe
def _asymmetric_images(n, seed):
    """Bright top rows, dark bottom rows, plus noise: the orientation is visible."""
    g = torch.Generator().manual_seed(seed)
    ramp = torch.linspace(220, 30, 16).view(1, 1, 16, 1)
    x = ramp + torch.randn(n, 3, 16, 16, generator=g) * 25
    return x.clamp(0, 255).to(torch.uint8)


def test_transformation_probe_learns_rotation_from_informative_features():
    def featurize(images):
        x = images.float() / 255
        return {"grid": torch.nn.functional.avg_pool2d(x.mean(1, keepdim=True), 4).flatten(1),
                "mean": x.mean(dim=(2, 3))}  # rotation invariant

    splits = {s: _asymmetric_images(n, i) for i, (s, n) in enumerate(
        (("train", 400), ("val", 200), ("test", 400)))}
    rows = pd.DataFrame(transformation_probe(featurize, splits, ["rotation", "color"], steps=100))
    rot = rows[rows["task"] == "rotation"].set_index(["features", "split"])["top1"]
    assert rot["grid", "test"] > 0.95 and rot["grid", "val"] > 0.95
    sd = math.sqrt(0.25 * 0.75 / 400)
    assert abs(rot["mean", "test"] - 0.25) < 4 * sd  # invariant features: chance
    assert set(rows["split"]) == {"val", "test"} and (rows["chance"].isin([0.25, 0.5])).all()

    images = _asymmetric_images(4, 9)
    k = torch.tensor([0, 1, 2, 3])
    assert torch.equal(apply_transform("rotation", images, k)[2], images[2].flip(-1).flip(-2))
    gray = apply_transform("color", images, torch.tensor([0, 1, 0, 1]))
    assert torch.equal(gray[0], images[0]) and (gray[1][0] == gray[1][1]).all()


# ------------------------------------------------------------------ raycl.evaluate on a checkpoint
def test_evaluate_checkpoint_in_process(tmp_path):
    from raycl.train import STATE_FILE, build_model

    cfg = preset("tiny").override({"data.num_images": 300, "data.num_test_images": 100,
                                   "name": "ck", "storage_path": str(tmp_path)})
    ckpt = tmp_path / "ck" / "checkpoint_000000"
    ckpt.mkdir(parents=True)
    weights = build_model(cfg.override({"train.seed": 123})).state_dict()  # not the config's own init
    torch.save({"model": weights, "optimizer": {}, "epoch": 0, "step": 0,
                "history": [], "config": cfg.to_dict()}, ckpt / STATE_FILE)
    protocols = ["knn", "linear", "linear_z", "random_linear", "finetune10", "distill10", "transform"]
    df = raycl.evaluate(str(tmp_path / "ck"), protocols, use_ray=False, finetune_epochs=2,
                        distill_epochs=1, linear_steps=30, transform_images=32,
                        transform_tasks=["rotation"])
    assert list(df["protocol"].unique()) == protocols
    assert set(df["split"]) == {"val", "test"}
    assert df["top1"].between(0, 1).all() and (df["seconds"] > 0).all()
    assert df.loc[df["protocol"] == "distill10", "teacher_top1"].notna().all()
    assert set(df.loc[df["protocol"] == "transform", "features"]) == {"h", "z"}
    assert df.loc[df["protocol"] == "linear_z", "features"].iloc[0] == "g2"
    # the probe reads the checkpoint's weights, the random baseline the config's seeded init
    lin = df[df["protocol"].isin(["linear", "random_linear"])].pivot(
        index="split", columns="protocol", values=["top1", "top5"])
    assert not lin.xs("linear", axis=1, level=1).equals(lin.xs("random_linear", axis=1, level=1))
    on_disk = pd.read_parquet(tmp_path / "ck" / EVALUATION)
    assert len(on_disk) == len(df)
    assert (tmp_path / "ck" / subset_file(10, 0)).is_file()
    again = raycl.evaluate(str(ckpt), ["knn"], use_ray=False)  # replaces only the knn rows
    pd.testing.assert_frame_equal(again[["top1", "top5"]],
                                  df[df["protocol"] == "knn"][["top1", "top5"]].reset_index(drop=True))
    assert len(pd.read_parquet(tmp_path / "ck" / EVALUATION)) == len(df)


# ------------------------------------------------------------------ end to end (Ray)
@pytest.mark.ray
def test_run_with_evaluation(ray_local, tmp_path):
    result = raycl.run(method="simclr", preset="tiny", workers=2, epochs=1,
                       storage_path=str(tmp_path), name="ev",
                       evaluate=["knn", "linear", "finetune10"], **{"data.num_images": 600})
    ev = result.evaluation
    assert set(ev["protocol"]) == {"knn", "linear", "finetune10"}
    assert ev.groupby("protocol")["split"].apply(set).map(lambda s: s == {"val", "test"}).all()
    assert ev[["top1", "top5", "seconds"]].notna().all().all()
    assert os.path.isfile(os.path.join(result.path, subset_file(10, 0)))
    from raycl.data.pipeline import load_split_listings

    classes = load_split_listings(result.config).num_classes
    linear = ev[(ev["protocol"] == "linear")].set_index("split")["top1"]
    assert linear["val"] > 1 / classes and linear["test"] > 1 / classes
    on_disk = pd.read_parquet(os.path.join(result.path, EVALUATION))
    pd.testing.assert_frame_equal(on_disk, ev, check_dtype=False)
