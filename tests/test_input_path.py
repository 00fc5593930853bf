"""The input path as a new user meets it: odd and damaged files, class maps across splits, bad
labels, ambiguous layouts, per-epoch shuffling, and a folder of odd files trained end to end."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import ray
import torch
from PIL import Image

import raycl
from raycl.config import preset
from raycl.data.augment import make_views
from raycl.data.clock import EpochClock
from raycl.data.decode import BACKGROUND, BadImageError, decode_batch, decode_image
from raycl.data.listing import balanced_subset
from raycl.data.pipeline import load_split_listings, train_dataset
from raycl.data.reading import window_rows
from raycl.data.sources import list_images


def _encode(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def _jpeg(rgb: np.ndarray, **kwargs) -> bytes:
    return _encode(Image.fromarray(rgb), "JPEG", quality=95, **kwargs)


def _odd_files() -> dict[str, bytes]:
    """One file of each kind a real folder holds (name -> bytes)."""
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: to be shown rotated by 90 degrees
    rgba = np.zeros((16, 16, 4), dtype=np.uint8)
    rgba[..., 0] = 200  # red, fully transparent on the left half
    rgba[:, 8:, 3] = 255
    palette = Image.fromarray(rng.integers(0, 4, (16, 16), dtype=np.uint8), mode="P")
    palette.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * 756)
    return {
        "good.jpg": _jpeg(photo),
        "rotated.jpg": _jpeg(photo, exif=exif.tobytes()),
        "gray.jpg": _encode(Image.fromarray(photo[..., 0]), "JPEG"),
        "deep.png": _encode(Image.fromarray(np.full((16, 16), 60000, dtype=np.uint16)), "PNG"),
        "rgba.png": _encode(Image.fromarray(rgba, mode="RGBA"), "PNG"),
        "palette.png": _encode(palette, "PNG", transparency=0),
        "truncated.jpg": _jpeg(photo)[:300],
        "garbage.jpg": b"this is not an image at all" * 10,
        "._good.jpg": b"\x00\x05\x16\x07 AppleDouble metadata",
        "notes.txt": b"a text file beside the images",
    }


# --- decoding ----------------------------------------------------------------------------------


def test_odd_images_decode_as_a_viewer_shows_them():
    files = _odd_files()
    deep = decode_image(files["deep.png"], 16)
    assert deep.shape == (16, 16, 3) and (deep == 60000 * 255 // 65535).all()  # 233, not 255
    rgba = decode_image(files["rgba.png"], 16)
    assert (rgba[:, :8] == BACKGROUND).all() and (rgba[:, 8:] == (200, 0, 0)).all()
    palette = decode_image(files["palette.png"], 16)  # index 0 is transparent: background
    assert palette.shape == (16, 16, 3) and {tuple(p) for p in palette.reshape(-1, 3)} <= {
        BACKGROUND, (255, 0, 0), (0, 255, 0), (0, 0, 255)}
    gray = decode_image(files["gray.jpg"], 40)
    assert (gray[..., 0] == gray[..., 1]).all() and (gray[..., 1] == gray[..., 2]).all()
    # a 60x40 photo stored sideways is shown 40 wide and 60 high: its centre crop is the rotated one
    with Image.open(io.BytesIO(files["good.jpg"])) as img:
        upright = np.asarray(img.transpose(Image.Transpose.ROTATE_270))
    rotated = decode_image(files["rotated.jpg"], 40)
    top = (60 - 40) // 2
    assert np.abs(rotated.astype(int) - upright[top:top + 40].astype(int)).mean() < 8
    assert np.abs(rotated.astype(int) - decode_image(files["good.jpg"], 40).astype(int)).mean() > 40


def test_damaged_images_are_skipped_or_named():
    files = _odd_files()
    names = ["good.jpg", "truncated.jpg", "garbage.jpg", "rgba.png"]
    images, ok = decode_batch([files[n] for n in names], 16, on_bad="skip", keys=names)
    assert ok.tolist() == [True, False, False, True] and images.shape == (2, 16, 16, 3)
    with pytest.raises(BadImageError, match=r"truncated\.jpg"):
        decode_batch([files[n] for n in names], 16, on_bad="fail", keys=names)
    with pytest.raises(BadImageError, match=r"row 2: not an image"):
        decode_batch([files["good.jpg"], files["good.jpg"], files["garbage.jpg"]], 16)


def _pillow_decode(data: bytes, size: int) -> np.ndarray:
    """The reference: Pillow alone (its JPEG draft mode reduces in the DCT domain as OpenCV does),
    shorter side resized with antialiasing, centre square kept."""
    with Image.open(io.BytesIO(data)) as img:
        img.draft("RGB", (size, size))
        img = img.convert("RGB")
        side = min(img.size)
        left, top = (img.width - side) // 2, (img.height - side) // 2
        return np.asarray(img.resize((size, size), Image.Resampling.BILINEAR,
                                     box=(left, top, left + side, top + side)))


@pytest.mark.parametrize(("shape", "size"), [((375, 500), 256), ((375, 500), 96), ((500, 333), 64),
                                             ((32, 32), 96), ((40, 60), 40)])
def test_opencv_decoding_shows_what_pillow_shows(shape, size):
    """JPEGs and plain PNGs take OpenCV (with DCT-domain reduction where the image is 2x, 4x or 8x
    the size asked for); the picture is Pillow's up to resampling detail (OpenCV's bilinear resize
    does not antialias below 1.5x: at this image's sharp edges it differs most)."""
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    side = min(shape) // 6
    board = (xx // side + yy // side) % 2 * 255  # gradients and sharp edges, as in a photograph
    smooth = np.stack([xx * 255 // shape[1], yy * 255 // shape[0], board], -1).astype(np.uint8)
    for data in (_jpeg(smooth), _encode(Image.fromarray(smooth), "PNG")):
        ours, reference = decode_image(data, size).astype(int), _pillow_decode(data, size).astype(int)
        assert ours.shape == (size, size, 3)
        assert np.abs(ours - reference).mean() < 5, np.abs(ours - reference).mean()  # of 255


def test_a_jpeg_cut_short_near_its_end_is_refused_not_padded_with_grey():
    rng = np.random.default_rng(1)
    data = _jpeg(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    with pytest.raises(BadImageError):
        decode_image(data[:-200], 32)


def test_ambiguous_tensor_layouts_are_refused():
    views = make_views("simclr", size=8)
    with pytest.raises(ValueError, match="ambiguous"):
        views[0](np.zeros((2, 3, 9, 3), dtype=np.uint8))


# --- listings: folders, class maps, labels ------------------------------------------------------


def _folder(root: Path, layout: dict[str, list[str]], files: dict[str, bytes]) -> None:
    for cls, names in layout.items():
        (root / cls).mkdir(parents=True, exist_ok=True)
        for name in names:
            (root / cls / name).write_bytes(files[name])


def test_folder_listing_leaves_out_hidden_and_non_image_files(tmp_path):
    files = _odd_files()
    _folder(tmp_path, {"cat": list(files), ".hidden": ["good.jpg"]}, files)
    listing = list_images("folder", "train", path=tmp_path)
    keys = listing.rows.column("key").to_pylist()
    assert "cat/._good.jpg" not in keys and "cat/notes.txt" not in keys
    assert len(keys) == 8 and listing.class_names == ("cat",)  # the damaged ones are found when read


def test_folder_classes_are_mapped_by_name_across_splits(tmp_path, caplog):
    files = _odd_files()
    _folder(tmp_path / "train", {"a": ["good.jpg"], "b": [], "c": ["gray.jpg", "rgba.png"]}, files)
    _folder(tmp_path / "test", {"a": ["good.jpg"], "c": ["gray.jpg"]}, files)
    with caplog.at_level(logging.WARNING):
        train = list_images("folder", "train", path=tmp_path)
    assert "['b']" in caplog.text and "no images" in caplog.text  # the empty class is said, not numbered
    test = list_images("folder", "test", path=tmp_path)
    assert train.class_names == test.class_names == ("a", "c")
    by_key = dict(zip(test.rows.column("key").to_pylist(), test.labels))
    assert by_key == {"a/good.jpg": 0, "c/gray.jpg": 1}  # c is 1 in both splits
    _folder(tmp_path / "test", {"d": ["good.jpg"]}, files)
    with pytest.raises(ValueError, match=r"\['d'\] of split 'test' are not classes of the training split"):
        list_images("folder", "test", path=tmp_path)


@pytest.mark.parametrize(("labels", "message"), [
    ([0, None, 1, None], r"column 'label' has 2 null value\(s\) of 4"),
    ([0, -1, 1, -1], r"column 'label' has 2 negative value\(s\) of 4 \(e\.g\. -1"),
])
def test_null_and_negative_labels_fail_clearly(tmp_path, labels, message):
    image = _odd_files()["good.jpg"]
    pq.write_table(pa.table({"image": pa.array([image] * 4, pa.binary()),
                             "label": pa.array(labels, pa.int64())}), tmp_path / "train.parquet")
    with pytest.raises(ValueError, match=message):
        list_images("parquet", "train", path=tmp_path)


def test_parquet_directory_of_files_lists_row_groups_as_chunks(tmp_path):
    image = _odd_files()["good.jpg"]
    (tmp_path / "train").mkdir()
    for f in range(3):
        table = pa.table({"image": pa.array([image] * 25, pa.binary()),
                          "label": pa.array(np.arange(25) % 5, pa.int64())})
        pq.write_table(table, tmp_path / "train" / f"part-{f}.parquet", row_group_size=10)
    listing = list_images("parquet", "train", path=tmp_path)
    assert listing.num_rows == 75 and listing.num_chunks == 9  # 10 + 10 + 5 rows per file
    assert listing.rows.column("key").to_pylist()[:2] == ["part-0.parquet#0", "part-0.parquet#1"]
    read = listing.take(np.array([0, 74])).read()
    assert read.column("image").to_pylist() == [image, image]


def test_balanced_subset_shares_out_classes_evenly():
    labels = np.repeat(np.arange(3), [50, 4, 30])
    keys = [str(i) for i in range(len(labels))]
    picked = balanced_subset(keys, labels, 30, seed=0)
    assert np.bincount(labels[picked]).tolist() == [13, 4, 13]  # the small class gives all it has
    assert np.array_equal(picked, balanced_subset(keys[::-1][::-1], labels, 30, seed=0))


# --- per-epoch shuffle -------------------------------------------------------------------------


def test_windows_cover_every_row_once_and_change_every_epoch():
    starts = np.array([0, 10, 20, 25, 35])  # four chunks of 10, 10, 5 and 10 rows
    for seed in (None, 3):
        for epoch in (0, 1):
            windows = [window_rows(starts, 2, w, seed, epoch) for w in range(2)]
            assert sorted(np.concatenate(windows).tolist()) == list(range(35))
            for rows in windows:  # a window is made of whole chunks
                chunks = set(np.searchsorted(starts, rows, side="right") - 1)
                assert len(chunks) == 2 and sum(starts[c + 1] - starts[c] for c in chunks) == len(rows)
    assert window_rows(starts, 2, 0, None, 0).tolist() == list(range(20))  # unshuffled: listing order
    first, second = (window_rows(starts, 4, 0, 3, e) for e in (0, 1))
    assert not np.array_equal(first, second)


def _batch_pairs(ds) -> set[tuple[int, int]]:
    """Pairs of images that share an augmented block (what a training batch is drawn from: its
    in-batch negatives for a contrastive loss)."""
    pairs = set()
    for block in ds.iter_batches(batch_size=None, batch_format="numpy"):
        members = sorted(block["id"].tolist())
        pairs.update((a, b) for k, a in enumerate(members) for b in members[k + 1:])
    return pairs


def test_two_epochs_see_different_batch_compositions(ray_local):
    cfg = preset("tiny").override({"data.num_images": 540, "augment.batch_size": 32})
    split = load_split_listings(cfg)
    clock = EpochClock.remote()
    ds = train_dataset(split.train, cfg, clock)
    first = _batch_pairs(ds)
    again = _batch_pairs(ds)
    ray.get(clock.set.remote(1))
    second = _batch_pairs(ds)
    assert first == again  # reproducible within an epoch for a fixed seed
    overlap = len(first & second) / len(first)
    assert overlap < 0.15, f"{overlap:.1%} of in-batch pairs repeat"  # a full shuffle: about 32/486


# --- end to end --------------------------------------------------------------------------------


def _odd_folder(root: Path) -> None:
    """Two classes of good images of mixed sizes and kinds, and the odd files among them."""
    files = _odd_files()
    rng = np.random.default_rng(1)
    for cls, tint in (("red", 0), ("blue", 2)):
        (root / cls).mkdir(parents=True)
        for i in range(40):
            h, w = rng.integers(24, 64, 2)
            image = rng.integers(0, 120, (h, w, 3), dtype=np.uint8)
            image[..., tint] += 120
            (root / cls / f"{i:02d}.{'png' if i % 2 else 'jpg'}").write_bytes(
                _encode(Image.fromarray(image), "PNG" if i % 2 else "JPEG"))
        for name, data in files.items():
            (root / cls / name).write_bytes(data)


def test_a_folder_of_odd_files_trains_and_counts_what_it_skipped(ray_local, tmp_path, capsys):
    _odd_folder(tmp_path / "data")
    overrides = {"data.source": "folder", "data.path": str(tmp_path / "data"), "train.batch_size": 32,
                 "eval.knn_k": 5}
    result = raycl.run(method="simclr", workers=1, preset="tiny", epochs=1,
                       storage_path=str(tmp_path / "runs"), name="odd", **overrides)
    assert result.metrics["bad_images"] == 4  # truncated.jpg and garbage.jpg of both classes
    assert "skipped 4 undecodable image(s), e.g." in capsys.readouterr().out
    with pytest.raises(BadImageError, match=r"(red|blue)/(truncated|garbage)\.jpg") as stopped:
        raycl.run(method="simclr", workers=1, preset="tiny", epochs=1, storage_path=str(tmp_path / "runs"),
                  name="odd-fail", **{**overrides, "data.on_bad_image": "fail"})
    assert len(str(stopped.value).splitlines()) == 1, str(stopped.value)  # the file, not a traceback


def test_a_folder_is_read_through_a_uri_too(tmp_path):
    files = _odd_files()
    _folder(tmp_path / "data", {"cat": ["good.jpg", "gray.jpg"], "dog": ["rgba.png"]}, files)
    by_path = list_images("folder", "train", path=tmp_path / "data")
    by_uri = list_images("folder", "train", path=f"file://{tmp_path / 'data'}")
    assert by_uri.rows.equals(by_path.rows)
    expected = [files["good.jpg"], files["gray.jpg"], files["rgba.png"]]
    assert by_uri.read().column("image").to_pylist() == expected


def test_ray_and_local_feature_extraction_agree_and_skip_the_same_images(ray_local, tmp_path, monkeypatch):
    from raycl.protocols.session import SPLITS, Session
    from raycl.train import build_model

    _odd_folder(tmp_path / "data")
    cfg = preset("tiny").override({"data.source": "folder", "data.path": str(tmp_path / "data"),
                                   "augment.batch_size": 16}).validate()
    state = {"model": build_model(cfg, global_bn=False).state_dict()}
    with monkeypatch.context() as patch:  # the Ray path never decodes a split in this process
        patch.setattr("raycl.data.workers.decode_listing", lambda *args: pytest.fail("decoded here"))
        by_ray = Session(cfg, state, str(tmp_path), use_ray=True)
        features = by_ray.features(False, 0)
        labels = {split: by_ray.labels(split) for split in SPLITS}
    local = Session(cfg, state, str(tmp_path), use_ray=False)
    for split in SPLITS:
        torch.testing.assert_close(features[split], local.features(False, 0)[split])
        assert torch.equal(labels[split], local.labels(split))
    assert len(labels["train"]) + len(labels["val"]) == 2 * 46  # 2 undecodable images per class
