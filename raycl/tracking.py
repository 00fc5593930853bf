"""Experiment tracking: a run's or a sweep's per-epoch metrics in TensorBoard, MLflow or Weights &
Biases, when asked (``train.trackers``; ``--log`` on the command line).

A sweep hands them to Ray Tune as Ray's own logger callbacks (``TBXLoggerCallback``,
``MLflowLoggerCallback``, ``WandbLoggerCallback``), one tracked run per trial. A single run has no
Tune driver, and Ray Train V2 takes no logger callbacks, so its driver logs the rows rank 0 reports
(forwarded by :mod:`raycl.train.progress`, which prints them too) through :class:`Trackers`: the
trackers' sessions then live in the user's process, with its environment and credentials
(``MLFLOW_TRACKING_URI``, ``WANDB_API_KEY`` …). TensorBoard's event files go to ``<run>/tensorboard``.
The packages are optional extras (``pip install 'raycl[tracking]'``).
"""

from __future__ import annotations

import importlib.util
import math
import os
from collections.abc import Sequence
from typing import Any

from raycl.checks import ConfigError
from raycl.config import Config

PACKAGES = {"tensorboard": "tensorboardX", "mlflow": "mlflow", "wandb": "wandb"}  # names: TRACKERS
TENSORBOARD_DIR = "tensorboard"
PROJECT = "raycl"  # the MLflow experiment / W&B project unless MLFLOW_EXPERIMENT_NAME / WANDB_PROJECT


def check_installed(names: Sequence[str]) -> None:
    """A :class:`ConfigError` naming the first tracker whose package is not installed."""
    for name in names:
        if importlib.util.find_spec(PACKAGES[name]) is None:
            raise ConfigError("train.trackers", name, f"a tracker whose package is installed: pip install "
                              f"{PACKAGES[name]} (or raycl[tracking])")


def scalars(row: dict[str, Any]) -> dict[str, float]:
    """The finite numbers of a metrics row, but its step (``epoch``)."""
    return {k: float(v) for k, v in row.items()
            if k != "epoch" and isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


class _TensorBoard:
    def __init__(self, cfg: Config, run_dir: str):
        from tensorboardX import SummaryWriter

        self.writer = SummaryWriter(os.path.join(run_dir, TENSORBOARD_DIR))

    def log(self, values: dict[str, float], step: int) -> None:
        for key, value in values.items():
            self.writer.add_scalar(key, value, step)
        self.writer.flush()  # on disk every epoch: a run that dies keeps its curves

    def close(self) -> None:
        self.writer.close()


class _MLflow:
    def __init__(self, cfg: Config, run_dir: str):
        import mlflow

        self.mlflow = mlflow
        mlflow.set_experiment(os.environ.get("MLFLOW_EXPERIMENT_NAME", PROJECT))
        self.run = mlflow.start_run(run_name=cfg.name)
        mlflow.log_params({k: str(v)[:500] for k, v in cfg.flat().items()})  # MLflow's value limit

    def log(self, values: dict[str, float], step: int) -> None:
        self.mlflow.log_metrics(values, step=step)

    def close(self) -> None:
        self.mlflow.end_run()


class _Wandb:
    def __init__(self, cfg: Config, run_dir: str):
        import wandb

        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT", PROJECT), name=cfg.name,
                              config=cfg.flat(), dir=run_dir if "://" not in run_dir else None)

    def log(self, values: dict[str, float], step: int) -> None:
        self.run.log(values, step=step)

    def close(self) -> None:
        self.run.finish()


_WRITERS = {"tensorboard": _TensorBoard, "mlflow": _MLflow, "wandb": _Wandb}


class Trackers:
    """The trackers of one run, on the driver: :meth:`log` one metrics row per report, then
    :meth:`close`."""

    def __init__(self, cfg: Config, run_dir: str):
        check_installed(cfg.train.trackers)
        self.writers = [_WRITERS[name](cfg, run_dir) for name in cfg.train.trackers]

    def log(self, row: dict[str, Any]) -> None:
        values, step = scalars(row), int(row.get("epoch", 0))
        for writer in self.writers:
            writer.log(values, step)

    def close(self) -> None:
        for writer in self.writers:
            writer.close()


def tune_callbacks(names: Sequence[str], sweep_name: str) -> list:
    """Ray Tune's own logger callbacks for ``names``: one tracked run per trial."""
    check_installed(names)
    out = []
    for name in names:
        if name == "tensorboard":
            from ray.tune.logger import TBXLoggerCallback

            out.append(TBXLoggerCallback())
        elif name == "mlflow":
            from ray.air.integrations.mlflow import MLflowLoggerCallback

            experiment = os.environ.get("MLFLOW_EXPERIMENT_NAME", sweep_name)
            out.append(MLflowLoggerCallback(experiment_name=experiment))
        else:
            from ray.air.integrations.wandb import WandbLoggerCallback

            project = os.environ.get("WANDB_PROJECT", PROJECT)
            out.append(WandbLoggerCallback(project=project, group=sweep_name))
    return out
