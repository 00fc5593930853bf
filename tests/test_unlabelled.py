"""Pre-training on images without labels, with the kNN monitor on a separate labelled source."""

import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import raycl
from raycl.config import ConfigError, preset
from raycl.data.decode import encode_png
from raycl.data.listing import UNLABELLED
from raycl.data.pipeline import NoLabelsError, load_split_listings, pretraining_listing
from raycl.data.sources import list_images
from raycl.data.synthetic import make_images


def _unlabelled_folder(root, n: int) -> str:
    """``n`` PNGs under ``root`` at several depths, in folders that are not classes."""
    images, _ = make_images(n, seed=7)
    for i, png in enumerate(encode_png(images)):
        folder = root / ("" if i % 3 == 0 else f"camera{i % 2}/day{i % 5}")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"img{i:04d}.png").write_bytes(png)
    (root / "notes.txt").write_text("not an image")
    return str(root)


def test_an_unlabelled_folder_and_parquet_file_are_listed_without_labels(tmp_path):
    root = _unlabelled_folder(tmp_path / "pool", 30)
    listing = list_images("folder", "train", path=root, labelled=False)
    assert listing.num_rows == 30 and set(listing.labels) == {UNLABELLED} and listing.class_names == ()
    assert sum("/" in k for k in listing.rows.column("key").to_pylist()) == 20  # nested files too
    with pytest.raises(ValueError, match="expected one sub-directory per class"):  # labelled: classes needed
        list_images("folder", "train", path=str(tmp_path / "pool" / "camera0" / "day0"))

    images, _ = make_images(12, seed=1)
    table = pa.table({"image": pa.array(encode_png(images), type=pa.binary())})
    pq.write_table(table, tmp_path / "u.parquet")
    listing = list_images("parquet", "train", path=str(tmp_path / "u.parquet"), labelled=False, num_images=5)
    assert listing.num_rows == 5 and set(listing.labels) == {UNLABELLED}
    assert len(listing.read().column("image")[0].as_py()) > 100  # the bytes are still there
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['label'\].*data.unlabelled=true"):
        list_images("parquet", "train", path=str(tmp_path / "u.parquet"))


def test_the_labelled_source_is_eval_data_source_and_the_pretraining_images_are_all_of_data(tmp_path):
    root = _unlabelled_folder(tmp_path / "pool", 90)
    cfg = preset("tiny").override({"data.source": "folder", "data.path": root, "data.unlabelled": True,
                                   "data.num_images": None}).validate()
    with pytest.raises(NoLabelsError, match="set eval.data_source and eval.data_path"):
        load_split_listings(cfg)
    assert pretraining_listing(cfg, None).num_rows == 90

    cfg = cfg.override({"eval.data_source": "embedded", "eval.data_num_images": 200}).validate()
    split = load_split_listings(cfg, with_test=True)
    assert split.train.num_rows + split.val.num_rows == 200 and split.num_classes == 10
    assert split.test.num_rows == 500  # the labelled source's test split: data.num_test_images
    assert pretraining_listing(cfg, split).num_rows == 90  # no image held out: validation is elsewhere

    # a labelled run's own data is its labelled source: pre-training leaves the validation images out
    own = preset("tiny").override({"data.num_images": 300}).validate()
    split = load_split_listings(own)
    assert pretraining_listing(own, split).num_rows == split.train.num_rows < 300


def test_bad_labelled_source_settings_name_the_field():
    tiny = preset("tiny")
    with pytest.raises(ConfigError, match="eval.data_path = None is not allowed: a path is required"):
        tiny.override({"eval.data_source": "parquet"}).validate()
    with pytest.raises(ConfigError, match="eval.data_path = 'x' is not allowed: no path without"):
        tiny.override({"eval.data_path": "x"}).validate()
    with pytest.raises(ConfigError, match="eval.data_source = 'imagenet' is not allowed"):
        tiny.override({"eval.data_source": "imagenet", "eval.data_path": "x"}).validate()
    with pytest.raises(ConfigError, match="evaluate = \\['linear'\\] is not allowed: no protocols without"):
        raycl.run(preset="tiny", evaluate=["linear"], **{"data.unlabelled": True})
    with pytest.raises(ConfigError, match="data.unlabelled = True is not allowed: false in a sweep unless"):
        raycl.sweep("temperature", overrides={"data.unlabelled": True}, storage_path="/nonexistent")


@pytest.mark.ray
def test_an_unlabelled_folder_pre_trains_with_the_monitor_on_a_labelled_source(ray_local, tmp_path, capsys):
    root = _unlabelled_folder(tmp_path / "pool", 256)
    common = {"data.source": "folder", "data.path": root, "data.unlabelled": True, "data.num_images": None,
              "epochs": 1, "storage_path": str(tmp_path)}
    result = raycl.run(method="simclr", workers=2, preset="tiny", name="monitored",
                       **common, **{"eval.data_source": "embedded", "eval.data_num_images": 400})
    out = capsys.readouterr().out
    assert "256 training images (unlabelled)" in out and "kNN monitor on embedded" in out
    h = result.history.set_index("epoch")
    assert list(h.index) == [0, 1] and np.isfinite(h.loc[1, "loss"])
    assert 0.1 < h.loc[1, "knn_top1"] <= 1  # 10 classes of the labelled source, above chance
    assert os.path.isfile(os.path.join(result.checkpoint, "state.pt"))

    alone = raycl.run(method="simclr", workers=2, preset="tiny", name="alone", **common)
    out = capsys.readouterr().out
    assert out.count("no kNN monitor: the images have no labels") == 1  # said once, in the header
    assert list(alone.history["epoch"]) == [1] and "knn_top1" not in alone.history
