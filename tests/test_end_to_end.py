"""raycl.run on the embedded data with 2 Ray Train workers: metrics, checkpoint and result files."""

import math
import os

import pandas as pd
import pytest

import raycl
from raycl.methods import METHODS

pytestmark = pytest.mark.ray


def test_simclr_tiny_end_to_end(ray_local, tmp_path, capsys, monkeypatch):
    result = raycl.run(method="simclr", workers=2, preset="tiny", epochs=2,
                       storage_path=str(tmp_path), name="e2e")
    console = capsys.readouterr().out  # one line per epoch, forwarded from the Train controller
    assert console.count("[raycl] epoch 0/2 (before training) | kNN top-1") == 1
    assert console.count("[raycl] epoch 2/2 | loss") == 1 and "results in" in console

    h = result.history
    assert list(h["epoch"]) == [0, 1, 2]  # epoch 0: kNN before training
    trained = h[h["epoch"] > 0]
    assert all(math.isfinite(x) for x in trained["loss"])
    assert h["knn_top1"].notna().all() and ((h["knn_top1"] >= 0) & (h["knn_top1"] <= 1)).all()
    assert h["knn_top1"].iloc[-1] > h["knn_top1"].iloc[0]  # beats the random-init network
    assert (trained["images_per_s"] > 0).all()
    assert result.metrics["epoch"] == 2 and math.isfinite(result.metrics["loss"])

    assert result.path == os.path.join(str(tmp_path), "e2e")
    assert os.path.isfile(os.path.join(result.checkpoint, "state.pt"))
    on_disk = pd.read_parquet(os.path.join(result.path, "history.parquet"))
    pd.testing.assert_frame_equal(on_disk, h, check_dtype=False)
    summary = pd.read_parquet(os.path.join(result.path, "summary.parquet"))
    assert summary.loc[0, "train.workers"] == 2 and summary.loc[0, "final_epoch"] == 2
    assert os.path.getsize(os.path.join(result.path, "curves.png")) > 1000

    # the name is taken: a second run refuses it unless asked to resume, and resuming continues
    # from the last checkpoint with the history so far; the resumed run's kNN sets are over the
    # in-memory budget, so they stream through Ray Data, split between the workers
    with pytest.raises(FileExistsError, match="resume=True"):
        raycl.run(method="simclr", workers=2, preset="tiny", epochs=3,
                  storage_path=str(tmp_path), name="e2e")
    monkeypatch.setattr("raycl.data.pipeline.IN_MEMORY_EVAL_BYTES", 0)
    resumed = raycl.run(method="simclr", workers=2, preset="tiny", epochs=3,
                        storage_path=str(tmp_path), name="e2e", resume=True)
    assert list(resumed.history["epoch"]) == [0, 1, 2, 3]
    pd.testing.assert_frame_equal(resumed.history.iloc[:3], h, check_dtype=False)
    assert math.isfinite(resumed.metrics["loss"]) and resumed.metrics["epoch"] == 3
    assert 0 < resumed.metrics["knn_top1"] <= 1
    # the finished 2-epoch schedule is not re-stretched over 3 epochs: the extra epoch trains at the
    # schedule's end value instead of jumping back up to ~25 % of the peak (raycl.train.model.Schedule)
    lr = resumed.history.set_index("epoch")["lr"]
    assert lr[3] <= lr[2] < 0.01 * resumed.config.effective_lr()

    # a linear probe on the trained backbone beats the same probe on the randomly initialised one
    probes = raycl.evaluate(resumed.path, ["linear", "random_linear"])
    val = probes[probes["split"] == "val"].set_index("protocol")["top1"]
    assert val["linear"] > val["random_linear"], val

    # a new run from the exported backbone and head starts where this one ended: its kNN before
    # training is this run's last (same data, split and bank)
    raycl.export(resumed.checkpoint, str(tmp_path / "warm.pt"), part="backbone+head")
    warm = raycl.run(method="simclr", workers=2, preset="tiny", epochs=1, storage_path=str(tmp_path),
                     name="warm", **{"model.init_from": str(tmp_path / "warm.pt")})
    assert "[raycl] model.init_from: backbone and head from weights" in capsys.readouterr().out
    assert warm.history["knn_top1"].iloc[0] == pytest.approx(resumed.metrics["knn_top1"], abs=1e-6)


# kNN top-1 on the validation split must beat the randomly initialised network's after 2 epochs
# (2 workers, fixed seeds; every registered method's tiny preset is chosen so that 2 CPU epochs
# learn, see the README's tiny-preset table).
@pytest.mark.parametrize("method", [m for m in METHODS if m != "simclr"])
def test_each_method_runs_end_to_end(ray_local, tmp_path, method):
    result = raycl.run(method=method, workers=2, preset="tiny", epochs=2,
                       storage_path=str(tmp_path), name=method)
    h = result.history.set_index("epoch")
    assert list(h.index) == [0, 1, 2]
    loss = h.loc[[1, 2], "loss"]
    assert loss.map(math.isfinite).all() and loss[2] < loss[1]
    if method == "byol":
        assert (h.loc[[1, 2], "pretext_cos"] > 0).all()
        assert 0.99 < h.loc[2, "target_momentum"] <= 1.0
    if "pretext_top1" in h:
        assert h.loc[[1, 2], "pretext_top1"].between(0, 1).all()
    assert h.loc[2, "knn_top1"] > h.loc[0, "knn_top1"]
    assert os.path.isfile(os.path.join(result.checkpoint, "state.pt"))


def test_a_run_the_cluster_cannot_hold_fails_at_once(ray_local, monkeypatch, capsys, tmp_path):
    """Asked for GPUs the local cluster lacks, or more CPUs than it has, a run stops before Ray Train
    would wait forever; joining a cluster by address (it may autoscale) it says so and waits, up to
    train.cluster_wait_s."""
    from raycl.config import ConfigError, preset
    from raycl.train import check_cluster

    gpu = preset("tiny").override({"train.use_gpu": True}).validate()
    with pytest.raises(ConfigError, match="train.use_gpu = True .* this cluster has 0 GPU"):
        raycl.run(config=gpu, storage_path=str(tmp_path))
    big = preset("tiny").override({"train.workers": 4, "train.batch_size": 64}).validate()
    with pytest.raises(ConfigError, match="train.workers = 4 .* cluster's 4 CPUs: .* reserve 5 CPUs"):
        check_cluster(big)
    monkeypatch.setenv("RAY_ADDRESS", "auto")  # a cluster that may autoscale: wait, then say so
    with pytest.raises(ConfigError, match="cluster_wait_s = 0.3 .* after 0.3 s it still lacks .* 0 GPU"):
        check_cluster(gpu.override({"train.cluster_wait_s": 0.3}))
    assert "[raycl] waiting up to 0.3 s for the cluster to grow" in capsys.readouterr().out
    answers = iter([{"CPU": 4.0}, {"CPU": 4.0}, {"CPU": 4.0, "GPU": 2.0}])  # nodes arrive while it waits
    monkeypatch.setattr("ray.cluster_resources", lambda: next(answers))
    check_cluster(gpu.override({"train.cluster_wait_s": 30}))
    assert next(answers, None) is None


def test_a_diverging_run_stops_at_the_step_naming_it(ray_local, tmp_path, capsys):
    """An absurd learning rate makes the loss non-finite within a few steps: the run stops there with
    one line naming the method, step and epoch, on its first attempt (a retry from a checkpoint would
    diverge again), with train.max_failures = 3 left unused."""
    from raycl.train.model import DivergedError

    with pytest.raises(DivergedError) as err:
        raycl.run(method="simclr", preset="tiny", workers=1, epochs=2, storage_path=str(tmp_path),
                  name="nan", **{"optim.lr": 1e30, "optim.warmup_epochs": 0, "data.num_images": 600,
                                 "eval.knn_at_init": False})
    message = str(err.value)
    assert "simclr diverged: the loss is" in message and "at step " in message and "(epoch 1)" in message
    assert len(message.splitlines()) == 1 and err.value.__cause__ is None
    assert "restart" not in capsys.readouterr().out  # raycl.train.recovery says each restart


def test_the_raylets_worker_pool_notice_stays_off_the_console(capsys):
    import ray._private.worker as ray_worker

    from raycl.train.trainer import _quiet_worker_pool_notice

    _quiet_worker_pool_notice()
    _quiet_worker_pool_notice()  # once is enough: not wrapped twice
    notice = ("WARNING: 12 PYTHON worker processes have been started on node: abc with address: 1.2.3.4, "
              "which is 6x the maximum expected startup concurrency (2).")
    ray_worker.print_to_stdstream({"lines": [notice], "pid": "raylet", "is_err": False}, ignore_prefix=False)
    ray_worker.print_to_stdstream({"lines": ["a real raylet error"], "pid": "raylet", "is_err": False},
                                  ignore_prefix=False)
    out = capsys.readouterr().out  # (the shared test cluster logs to this driver: real notices may pass)
    assert "node: abc" not in out and "a real raylet error" in out


_JOIN = """
import ray
from raycl.config import preset
from raycl.train import ensure_ray
ensure_ray(preset("tiny"))
print("CPUS", ray.cluster_resources()["CPU"], ray.get_runtime_context().gcs_address)
"""


def test_a_ray_start_cluster_is_joined_while_it_lives_and_its_stale_address_ignored(ray_local, tmp_path):
    """The address file `ray start` leaves (here in an isolated RAY_TMPDIR) is followed while a cluster
    answers there, and ignored once none does, where Ray's own ray.init() would fail on it."""
    import shutil
    import subprocess
    import sys
    import tempfile

    ray_tmp = tempfile.mkdtemp(prefix="rc", dir="/tmp")  # short: Ray's socket paths live under it
    os.makedirs(os.path.join(ray_tmp, "ray"))
    address_file = os.path.join(ray_tmp, "ray", "ray_current_cluster")
    env = {**os.environ, "RAY_TMPDIR": ray_tmp}
    env.pop("RAY_ADDRESS", None)
    live = ray_local.get_runtime_context().gcs_address  # the tests' cluster: 4 CPUs
    with open(address_file, "w") as f:
        f.write(live)
    joined = subprocess.run([sys.executable, "-c", _JOIN], env=env, capture_output=True, text=True,
                            timeout=180)
    assert joined.returncode == 0, joined.stderr[-2000:]
    assert f"joining the Ray cluster started with `ray start` at {live}" in joined.stdout
    assert f"CPUS 4.0 {live}" in joined.stdout
    with open(address_file, "w") as f:
        f.write("127.0.0.1:1")  # a stopped head: nothing answers
    try:
        fresh = subprocess.run([sys.executable, "-c", _JOIN], env=env, capture_output=True, text=True,
                               timeout=180)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert fresh.returncode == 0, fresh.stderr[-2000:]
    assert "joining" not in fresh.stdout and "CPUS" in fresh.stdout and live not in fresh.stdout
