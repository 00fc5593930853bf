"""Experiment tracking: TensorBoard event files hold the per-epoch metrics; MLflow and W&B get the
same rows (checked through stand-ins: their packages are optional and not installed here)."""

import sys
import types

import pytest

from raycl.config import ConfigError, preset
from raycl.tracking import TENSORBOARD_DIR, Trackers, check_installed, scalars, tune_callbacks
from support import read_scalars


def test_tensorboard_files_hold_every_number_of_every_row(tmp_path):
    cfg = preset("tiny").override({"train.trackers": ["tensorboard"], "name": "t"}).validate()
    trackers = Trackers(cfg, str(tmp_path))
    trackers.log({"epoch": 0, "knn_top1": 0.25})
    trackers.log({"epoch": 1, "loss": 3.5, "knn_top1": 0.5, "lr": 1e-3, "run": "t", "nan": float("nan")})
    trackers.close()
    assert read_scalars(tmp_path / TENSORBOARD_DIR) == {"knn_top1": {0: 0.25, 1: 0.5}, "loss": {1: 3.5},
                                                       "lr": {1: pytest.approx(1e-3)}}


def test_mlflow_and_wandb_get_the_rows_and_the_config(tmp_path, monkeypatch):
    calls = []
    mlflow = types.SimpleNamespace(
        set_experiment=lambda name: calls.append(("experiment", name)),
        start_run=lambda run_name: calls.append(("start", run_name)),
        log_params=lambda params: calls.append(("params", params["optim.lr"])),
        log_metrics=lambda values, step: calls.append(("metrics", step, values)),
        end_run=lambda: calls.append(("end",)))
    run = types.SimpleNamespace(log=lambda values, step: calls.append(("wandb", step, values)),
                                finish=lambda: calls.append(("finish",)))
    wandb = types.SimpleNamespace(init=lambda **kw: calls.append(("init", kw["project"], kw["name"])) or run)
    monkeypatch.setitem(sys.modules, "mlflow", mlflow)
    monkeypatch.setitem(sys.modules, "wandb", wandb)
    monkeypatch.setattr("raycl.tracking.check_installed", lambda names: None)
    cfg = preset("tiny").override({"train.trackers": ["mlflow", "wandb"], "name": "r1"}).validate()
    trackers = Trackers(cfg, str(tmp_path))
    trackers.log({"epoch": 2, "loss": 1.5})
    trackers.close()
    assert calls == [("experiment", "raycl"), ("start", "r1"), ("params", repr(cfg.optim.lr)[:500]),
                     ("init", "raycl", "r1"), ("metrics", 2, {"loss": 1.5}), ("wandb", 2, {"loss": 1.5}),
                     ("end",), ("finish",)]


def test_tracker_names_and_packages_are_checked():
    with pytest.raises(ConfigError, match="train.trackers = 'tensorbord' is not allowed: one of tensorboard"):
        preset("tiny").override({"train.trackers": ["tensorbord"]}).validate()
    with pytest.raises(ConfigError, match="pip install wandb"):
        check_installed(["wandb"])  # not installed here
    assert scalars({"epoch": 3, "ok": True, "x": 2}) == {"x": 2.0}
    from ray.tune.logger import TBXLoggerCallback

    assert [type(c) for c in tune_callbacks(["tensorboard"], "s")] == [TBXLoggerCallback]
