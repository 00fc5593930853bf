"""Tests of the embedded synthetic set and of the image sources (no Ray, no network)."""

from __future__ import annotations

import io
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from raycl.data.sources import SOURCES, DataUnavailableError, class_names, load_table
from raycl.data.torchvision_sets import CIFAR10_CLASSES, CIFAR100_CLASSES, DOWNLOAD_TIMEOUT_S
from raycl.data.decode import decode_images, encode_png
from raycl.data.listing import hashed_split
from raycl.data.synthetic import CLASS_NAMES, make_images, make_labels

CIFAR_TEST = Path("/work/shared/datasets/cifar10/test.parquet")


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _knn_accuracy(train_x, train_y, test_x, test_y, k: int = 10) -> float:
    distances = ((test_x[:, None, :] - train_x[None, :, :]) ** 2).sum(-1)
    neighbours = train_y[np.argsort(distances, axis=1)[:, :k]]
    predictions = np.array([np.bincount(row, minlength=10).argmax() for row in neighbours])
    return float((predictions == test_y).mean())


# --- synthetic ---------------------------------------------------------------------------------


def test_class_names_are_ten_distinct_names():
    assert len(CLASS_NAMES) == 10 and len(set(CLASS_NAMES)) == 10


def test_make_images_shapes_and_dtypes():
    images, labels = make_images(12, image_size=24)
    assert images.shape == (12, 24, 24, 3) and images.dtype == np.uint8
    assert labels.shape == (12,) and labels.dtype == np.int64


def test_make_images_is_deterministic_and_slice_independent():
    images, labels = make_images(30, seed=3)
    again, again_labels = make_images(30, seed=3)
    part, part_labels = make_images(10, seed=3, start=7)
    np.testing.assert_array_equal(images, again)
    np.testing.assert_array_equal(labels, again_labels)
    np.testing.assert_array_equal(part, images[7:17])
    np.testing.assert_array_equal(part_labels, labels[7:17])


def test_different_seeds_give_different_images():
    first, _ = make_images(20, seed=0)
    second, _ = make_images(20, seed=1)
    assert (first != second).any(axis=(1, 2, 3)).all()


def test_images_in_a_set_are_distinct():
    images, _ = make_images(50)
    flat = images.reshape(len(images), -1)
    assert len(np.unique(flat, axis=0)) == len(images)


@pytest.mark.parametrize("num_classes", [2, 3, 10])
def test_labels_are_balanced(num_classes):
    labels = make_labels(100 * num_classes, start=5 * num_classes, num_classes=num_classes)
    np.testing.assert_array_equal(np.bincount(labels, minlength=num_classes), np.full(num_classes, 100))
    # Any window is within one of balanced, and the order is not a fixed cycle.
    window = np.bincount(make_labels(7, start=3, num_classes=num_classes), minlength=num_classes)
    assert window.max() - window.min() <= 1
    assert len(np.unique(labels.reshape(-1, num_classes), axis=0)) > 1


@pytest.mark.parametrize("image_size", [16, 64, 224])
def test_supported_image_sizes(image_size):
    images, _ = make_images(10, image_size=image_size)
    assert images.shape == (10, image_size, image_size, 3)
    # Every image shows a pattern with contrast, not a flat colour.
    assert (images.reshape(10, -1, 3).std(axis=1).max(axis=1) > 20).all()


def test_mean_colour_is_near_chance():
    images, labels = make_images(1500, seed=0)
    features = images.reshape(len(images), -1, 3).mean(axis=1)
    accuracy = _knn_accuracy(features[:1200], labels[:1200], features[1200:], labels[1200:])
    assert accuracy < 0.2, f"mean-colour kNN accuracy {accuracy:.3f} is far above chance (0.1)"


def test_make_images_is_fast():
    started = time.perf_counter()
    make_images(2000)
    assert time.perf_counter() - started < 2.0


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"n": -1}, "n"),
        ({"n": 2, "image_size": 8}, "image_size"),
        ({"n": 2, "num_classes": 11}, "num_classes"),
        ({"n": 2, "start": -3}, "start"),
    ],
)
def test_make_images_rejects_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=rf"{name}=-?\d+"):
        make_images(**kwargs)


# --- embedded source ---------------------------------------------------------------------------


def test_embedded_table_round_trips_pixels_exactly():
    table = load_table("embedded", "train", num_images=25, seed=2, image_size=16)
    assert table.schema == pa.schema([("image", pa.binary()), ("label", pa.int64())])
    images, labels = make_images(25, seed=2, image_size=16)
    np.testing.assert_array_equal(decode_images(table.column("image"), 16), images)
    np.testing.assert_array_equal(table.column("label").to_numpy(), labels)


def test_embedded_train_and_test_differ():
    train = load_table("embedded", "train", num_images=40)
    test = load_table("embedded", "test", num_images=40)
    assert not set(train.column("image").to_pylist()) & set(test.column("image").to_pylist())


def test_embedded_default_sizes():
    assert load_table("embedded", "test").num_rows == 1000


# --- parquet source ----------------------------------------------------------------------------


def _write_parquet(file: Path, images: np.ndarray, labels: np.ndarray, **extra) -> None:
    columns = {
        "image": pa.array([_png(a) for a in images], pa.binary()),
        "label": pa.array(labels, pa.int16()),
    }
    pq.write_table(pa.table({**columns, **extra}), file)


def test_parquet_round_trip_file_directory_and_pattern(tmp_path):
    images, labels = make_images(12, seed=5)
    _write_parquet(tmp_path / "train.parquet", images, labels, note=pa.array(["x"] * 12))
    _write_parquet(tmp_path / "test.parquet", images[:4], labels[:4])
    for path in (tmp_path, tmp_path / "train.parquet", str(tmp_path / "{split}.parquet")):
        table = load_table("parquet", "train", path=path)
        assert table.column_names == ["image", "label"] and table.schema.field("label").type == pa.int64()
        np.testing.assert_array_equal(decode_images(table.column("image"), 32), images)
        np.testing.assert_array_equal(table.column("label").to_numpy(), labels)
    assert load_table("parquet", "test", path=tmp_path).num_rows == 4
    assert load_table("parquet", "train", path=tmp_path, num_images=5).num_rows == 5


def test_parquet_without_label_column_is_rejected(tmp_path):
    pq.write_table(pa.table({"image": pa.array([b"x"], pa.binary())}), tmp_path / "train.parquet")
    with pytest.raises(ValueError, match=r"path=.*label"):
        load_table("parquet", "train", path=tmp_path)


def test_parquet_without_image_column_or_with_text_images_is_rejected(tmp_path):
    pq.write_table(pa.table({"label": pa.array([1], pa.int64())}), tmp_path / "a.parquet")
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['image'\]; expected image and label"):
        load_table("parquet", "train", path=tmp_path / "a.parquet")
    pq.write_table(pa.table({"image": ["x.png"], "label": [1]}), tmp_path / "b.parquet")
    with pytest.raises(ValueError, match="column 'image' has type string; expected binary"):
        load_table("parquet", "train", path=tmp_path / "b.parquet")


@pytest.mark.ray
@pytest.mark.parametrize("path, says", [
    ("nowhere.parquet", "nowhere.parquet"),
    ("no_image.parquet", "lacks column(s) ['image']"),
])
def test_a_bad_data_path_is_one_line_at_the_command_line(ray_local, tmp_path, capsys, path, says):
    from raycl.cli import main as cli_main

    pq.write_table(pa.table({"label": pa.array([1], pa.int64())}), tmp_path / "no_image.parquet")
    argv = ["run", "--set", "data.source=parquet", "--set", f"data.path={tmp_path / path}",
            "--set", f"storage_path={tmp_path / 'runs'}", "--set", "train.epochs=1"]
    assert cli_main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1 and says in err, err


def test_parquet_class_names(tmp_path):
    images, labels = make_images(6, num_classes=3)
    names = np.array(["a", "b", "c"])[labels]
    _write_parquet(tmp_path / "train.parquet", images, labels, label_name=pa.array(names))
    assert class_names("parquet", path=tmp_path) == ("a", "b", "c")
    _write_parquet(tmp_path / "other.parquet", images, labels)
    assert class_names("parquet", path=tmp_path / "other.parquet") == ("0", "1", "2")


@pytest.mark.skipif(not CIFAR_TEST.exists(), reason="shared CIFAR-10 Parquet file not present")
def test_parquet_reads_shared_cifar10():
    table = load_table("parquet", "test", path=CIFAR_TEST, num_images=200)
    assert table.column_names == ["image", "label"] and table.num_rows == 200
    labels = table.column("label").to_numpy()
    assert labels.min() >= 0 and labels.max() <= 9 and len(np.unique(labels)) == 10
    images = decode_images(table.column("image"), 32)
    assert images.shape == (200, 32, 32, 3) and images.std() > 20
    assert class_names("parquet", path=CIFAR_TEST) == CIFAR10_CLASSES


# --- folder source -----------------------------------------------------------------------------


def _write_folder(root: Path, images: np.ndarray, labels: np.ndarray, names: tuple[str, ...]) -> None:
    for i, (image, label) in enumerate(zip(images, labels)):
        directory = root / names[label]
        directory.mkdir(parents=True, exist_ok=True)
        (directory / f"{i:03d}.png").write_bytes(_png(image))


def test_folder_round_trip_with_and_without_split_dirs(tmp_path):
    images, labels = make_images(15, seed=4, num_classes=3)
    names = ("zebra", "apple", "mango")  # label index follows alphabetical order: apple, mango, zebra
    _write_folder(tmp_path / "flat", images, labels, names)
    _write_folder(tmp_path / "split" / "train", images, labels, names)
    (tmp_path / "flat" / "apple" / "notes.txt").write_text("not an image")
    expected = {_png(image): sorted(names).index(names[label]) for image, label in zip(images, labels)}
    for root in (tmp_path / "flat", tmp_path / "split"):
        table = load_table("folder", "train", path=root)
        assert table.num_rows == 15
        assert dict(zip(table.column("image").to_pylist(), table.column("label").to_pylist())) == expected
        assert class_names("folder", path=root) == ("apple", "mango", "zebra")
    subset = load_table("folder", "train", path=tmp_path / "flat", num_images=6, seed=1)
    assert np.bincount(subset.column("label").to_numpy()).tolist() == [2, 2, 2]  # class-balanced
    assert set(subset.column("image").to_pylist()) <= set(expected)
    assert subset == load_table("folder", "train", path=tmp_path / "flat", num_images=6, seed=1)
    assert subset != load_table("folder", "train", path=tmp_path / "flat", num_images=6, seed=2)


def test_folder_missing_split_and_empty_folder_are_rejected(tmp_path):
    images, labels = make_images(3, num_classes=3)
    _write_folder(tmp_path / "data" / "train", images, labels, ("a", "b", "c"))
    with pytest.raises(ValueError, match=r"split='test'"):
        load_table("folder", "test", path=tmp_path / "data")
    (tmp_path / "empty" / "cat").mkdir(parents=True)
    with pytest.raises(ValueError, match=r"path=.*empty.*no images"):
        load_table("folder", "train", path=tmp_path / "empty")


# --- torchvision sources -----------------------------------------------------------------------


@pytest.mark.parametrize("source", ["cifar10", "cifar100", "stl10"])
def test_torchvision_source_without_download_fails_fast(tmp_path, source):
    started = time.perf_counter()
    with pytest.raises(DataUnavailableError, match=r"not found under .*download=True"):
        load_table(source, "train", path=tmp_path)
    assert time.perf_counter() - started < 5.0


def test_torchvision_corrupt_folder_is_unavailable(tmp_path):
    (tmp_path / "cifar-10-batches-py").mkdir()
    with pytest.raises(DataUnavailableError, match=r"CIFAR-10 .*not found"):
        load_table("cifar10", "test", path=tmp_path)


def test_torchvision_download_failure_is_unavailable_and_restores_timeout(tmp_path, monkeypatch):
    timeouts = []

    def offline(*args, **kwargs):
        timeouts.append(socket.getdefaulttimeout())
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    previous = socket.getdefaulttimeout()
    with pytest.raises(DataUnavailableError, match=r"downloading it failed: URLError"):
        load_table("cifar10", "train", path=tmp_path, download=True)
    assert timeouts and all(t == DOWNLOAD_TIMEOUT_S for t in timeouts)
    assert socket.getdefaulttimeout() == previous


def test_torchvision_class_names():
    assert class_names("cifar10") == CIFAR10_CLASSES
    assert len(CIFAR100_CLASSES) == 100 and len(set(CIFAR100_CLASSES)) == 100
    assert class_names("stl10")[7] == "monkey"
    assert class_names("embedded") == CLASS_NAMES


# --- argument checks ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (("imagenet", "train"), {}, r"source='imagenet'.*embedded"),
        (("embedded", "validation"), {}, r"split='validation'.*'train', 'test'"),
        (("embedded", "train"), {"num_images": 0}, r"num_images=0"),
        (("embedded", "train"), {"image_size": 4}, r"image_size=4"),
        (("parquet", "train"), {}, r"path=None"),
        (("parquet", "train"), {"path": "/nonexistent/raycl"}, r"path='/nonexistent/raycl'.*does not exist"),
        (("folder", "train"), {"path": "/nonexistent/raycl"}, r"path='/nonexistent/raycl'.*does not exist"),
    ],
)
def test_load_table_rejects_bad_arguments(args, kwargs, message):
    with pytest.raises(ValueError, match=message):
        load_table(*args, **kwargs)


def test_sources_are_all_known_to_class_names():
    for source in SOURCES:
        if source not in ("parquet", "folder"):
            assert class_names(source)


# --- decode_images -----------------------------------------------------------------------------


def test_decode_resizes_non_square_images_by_centre_crop():
    wide = np.zeros((20, 40, 3), dtype=np.uint8)
    wide[:, 10:30] = 255  # white centre square, black sides
    decoded = decode_images([_png(wide)], 10)
    assert decoded.shape == (1, 10, 10, 3)
    # The crop kept the white centre; only the outermost columns may blend with the black sides.
    assert decoded[:, :, 1:-1].min() == 255 and decoded.min() > 128
    tall = decode_images([_png(wide.transpose(1, 0, 2))], 10)
    np.testing.assert_array_equal(tall, decoded.transpose(0, 2, 1, 3))


def test_decode_accepts_other_modes_and_containers():
    gray = Image.fromarray(np.full((8, 8), 77, dtype=np.uint8), mode="L")
    buffer = io.BytesIO()
    gray.save(buffer, format="JPEG", quality=100)
    images = np.array([buffer.getvalue()], dtype=object)
    decoded = decode_images(images, 8)
    assert decoded.shape == (1, 8, 8, 3) and np.abs(decoded.astype(int) - 77).max() <= 2


def test_decode_passes_decoded_arrays_through_or_resizes_them():
    images, _ = make_images(4, image_size=32)
    assert decode_images(images, 32) is images
    assert decode_images(images, 16).shape == (4, 16, 16, 3)
    with pytest.raises(ValueError, match="images"):
        decode_images(images.astype(np.float32), 32)


def test_encode_png_is_lossless():
    images, _ = make_images(5)
    np.testing.assert_array_equal(decode_images(encode_png(images), 32), images)


# --- hashed_split --------------------------------------------------------------------------


def _keys(n: int) -> list[str]:
    return [f"class/{i:05d}.jpg" for i in range(n)]


def test_hashed_split_is_stratified_disjoint_and_covering():
    labels = np.repeat(np.arange(4), [10, 20, 3, 2])
    train, val = hashed_split(_keys(len(labels)), labels, 0.3, seed=0)
    assert np.array_equal(np.sort(np.concatenate([train, val])), np.arange(len(labels)))
    assert not set(train) & set(val)
    assert np.all(np.diff(train) > 0) and np.all(np.diff(val) > 0)
    np.testing.assert_array_equal(np.bincount(labels[val], minlength=4), [3, 6, 1, 1])


def test_hashed_split_depends_only_on_keys_and_seed():
    labels = make_labels(200)
    keys = np.array(_keys(200), dtype=object)
    first = hashed_split(keys, labels, 0.2, seed=7)
    again = hashed_split(keys, labels, 0.2, seed=7)
    other = hashed_split(keys, labels, 0.2, seed=8)
    np.testing.assert_array_equal(first[1], again[1])
    assert not np.array_equal(first[1], other[1])
    # the same images listed in another order land in the same splits
    order = np.random.default_rng(0).permutation(200)
    shuffled = hashed_split(keys[order], labels[order], 0.2, seed=7)
    assert set(keys[order][shuffled[1]]) == set(keys[first[1]])


def test_hashed_split_zero_fraction_keeps_everything_in_train():
    train, val = hashed_split(_keys(3), np.array([0, 1, 1]), 0.0, seed=0)
    assert train.tolist() == [0, 1, 2] and val.size == 0


@pytest.mark.parametrize("fraction", [-0.1, 1.0, 1.5])
def test_hashed_split_rejects_bad_fraction(fraction):
    with pytest.raises(ValueError, match=rf"val_fraction={fraction}"):
        hashed_split(_keys(10), np.zeros(10, dtype=int), fraction, seed=0)
