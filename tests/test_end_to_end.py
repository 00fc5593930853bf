"""raycl.run on the embedded data with 2 Ray Train workers: metrics, checkpoint and result files."""

import math
import os

import pandas as pd
import pytest

import raycl

pytestmark = pytest.mark.ray


def test_simclr_tiny_end_to_end(ray_local, tmp_path):
    result = raycl.run(method="simclr", workers=2, preset="tiny", epochs=2,
                       storage_path=str(tmp_path), name="e2e")

    h = result.history
    assert list(h["epoch"]) == [0, 1, 2]  # epoch 0: kNN before training
    trained = h[h["epoch"] > 0]
    assert all(math.isfinite(x) for x in trained["loss"])
    assert h["knn_top1"].notna().all() and ((h["knn_top1"] >= 0) & (h["knn_top1"] <= 1)).all()
    assert (trained["images_per_s"] > 0).all()
    assert result.metrics["epoch"] == 2 and math.isfinite(result.metrics["loss"])

    assert result.path == os.path.join(str(tmp_path), "e2e")
    assert os.path.isfile(os.path.join(result.checkpoint, "state.pt"))
    on_disk = pd.read_parquet(os.path.join(result.path, "history.parquet"))
    pd.testing.assert_frame_equal(on_disk, h, check_dtype=False)
    summary = pd.read_parquet(os.path.join(result.path, "summary.parquet"))
    assert summary.loc[0, "train.workers"] == 2 and summary.loc[0, "final_epoch"] == 2
    assert os.path.getsize(os.path.join(result.path, "curves.png")) > 1000
