"""The Ray Data pipeline: fresh views each epoch, reproducible for a fixed seed, uint8 NCHW."""

import numpy as np
import pytest
import ray

from raycl.config import preset
from raycl.data.clock import EpochClock
from raycl.data.pipeline import (build_pipelines, in_memory_eval_set, knn_bank_rows, load_split_listings,
                                 train_dataset)
from raycl.data.sources import load_table
from raycl.data.workers import decode_for_eval

pytestmark = pytest.mark.ray


def _views_by_id(ds) -> dict[int, np.ndarray]:
    rows = ds.take_all()
    return {int(r["id"]): np.stack([r["view0"], r["view1"]]) for r in rows}


def test_views_differ_between_epochs_and_repeat_for_a_seed(ray_local):
    cfg = preset("tiny").override({"data.num_images": 120, "augment.batch_size": 32})
    tables = load_split_listings(cfg)
    clock = EpochClock.remote()
    ds = train_dataset(tables.train, cfg, clock)
    epoch0 = _views_by_id(ds)
    again = _views_by_id(ds)
    ray.get(clock.set.remote(1))
    epoch1 = _views_by_id(ds)

    assert sorted(epoch0) == list(range(tables.train.num_rows))
    first = epoch0[0]
    assert first.shape == (2, 3, cfg.augment.crop_size, cfg.augment.crop_size) and first.dtype == np.uint8
    assert all(np.array_equal(epoch0[i], again[i]) for i in epoch0)  # same seed, same epoch
    differ = sum(not np.array_equal(epoch0[i], epoch1[i]) for i in epoch0)
    assert differ == len(epoch0)  # a new epoch draws new views for every image
    assert sum(not np.array_equal(v[0], v[1]) for v in epoch0.values()) == len(epoch0)


def test_actor_pool_and_tasks_draw_the_same_views(ray_local):
    cfg = preset("tiny").override({"data.num_images": 80, "augment.batch_size": 16})
    tables = load_split_listings(cfg)
    by_actors = _views_by_id(train_dataset(tables.train, cfg.override({"augment.compute": "actors"}),
                                           EpochClock.remote()))
    by_tasks = _views_by_id(train_dataset(tables.train, cfg.override({"augment.compute": "tasks"}),
                                          EpochClock.remote()))
    assert by_actors.keys() == by_tasks.keys()
    assert all(np.array_equal(by_actors[i], by_tasks[i]) for i in by_actors)


def test_split_is_stratified_and_disjoint_from_test():
    cfg = preset("tiny").override({"data.num_images": 200})
    tables = load_split_listings(cfg, with_test=True)
    assert tables.train.num_rows + tables.val.num_rows == 200
    val_labels = np.bincount(tables.val.labels, minlength=10)
    assert (val_labels == 2).all()
    train_images = set(tables.train.read().column("image").to_pylist())
    assert not train_images & set(tables.val.read().column("image").to_pylist())
    assert not train_images & set(tables.test.read().column("image").to_pylist())


def test_eval_decode_centre_crops_to_view_size():
    table = load_table("embedded", "train", num_images=4, image_size=40)
    batch = {"image": np.array(table.column("image").to_pylist(), dtype=object),
             "label": table.column("label").to_numpy()}
    out = decode_for_eval(batch, image_size=40, crop_size=32)
    assert out["image"].shape == (4, 3, 32, 32) and out["image"].dtype == np.uint8


def test_knn_sets_are_decoded_once_and_shared_between_ranks(ray_local, monkeypatch):
    cfg = preset("tiny").override({"data.num_images": 300, "data.image_size": 40,
                                   "eval.knn_bank_size": 31})  # 31 rows: uneven shares
    tables = load_split_listings(cfg)
    bank = tables.train.take(knn_bank_rows(tables.train.num_rows, cfg))
    eval_set = in_memory_eval_set(bank, cfg)
    assert eval_set.size == 31
    table = bank.read()
    expected = decode_for_eval({"image": table.column("image"),
                                "label": table.column("label").to_numpy()}, 40, 32)
    for world in (1, 2, 3):  # every image once, in order, over the ranks' shares
        shares = [list(eval_set.batches(rank, world, batch_size=7)) for rank in range(world)]
        sizes = [sum(len(b["label"]) for b in share) for share in shares]
        assert max(sizes) - min(sizes) <= 1
        images = np.concatenate([b["image"].numpy() for share in shares for b in share])
        np.testing.assert_array_equal(images, expected["image"])
    # above the in-memory budget a kNN set stays a Ray dataset, decoded at every monitor
    pipes = build_pipelines(cfg)
    assert set(pipes.datasets) == {"train"} and all(pipes.knn_sets.values())
    monkeypatch.setattr("raycl.data.pipeline.IN_MEMORY_EVAL_BYTES", 1000)
    pipes = build_pipelines(cfg)
    assert set(pipes.datasets) == {"train", "knn_bank", "knn_val"}
    assert pipes.knn_sets == {"knn_bank": None, "knn_val": None}


def test_swav_multi_crop_views_and_node_resource(ray_local):
    cfg = preset("tiny", "swav").override({"data.num_images": 40, "augment.batch_size": 16})
    tables = load_split_listings(cfg)
    row = train_dataset(tables.train, cfg, EpochClock.remote()).take(1)[0]
    sizes = [row[f"view{i}"].shape for i in range(4)]
    assert sizes == [(3, 32, 32), (3, 32, 32), (3, 16, 16), (3, 16, 16)] and "view4" not in row
    pinned = train_dataset(tables.train, cfg.override({"augment.node_resource": "augment_node"}), None)
    args = pinned._logical_plan.dag.ray_remote_args  # not executed: no node has the resource here
    assert args["resources"] == {"augment_node": 0.001}
