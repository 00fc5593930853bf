"""A run's checkpoint: one ``state.pt`` with model, optimizer, position and the metric history.

Only tensors and plain data (numbers, strings, lists, dicts; the config as its dict) are stored, so a
checkpoint is read with ``torch.load(weights_only=True)``: a file someone hands you cannot run code
when it is opened.
"""

from __future__ import annotations

import io
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.fs as pafs
import ray.train
import torch

from raycl.config import Config
from raycl.methods.base import Method
from raycl.storage import filesystem

STATE_FILE = "state.pt"
STEP_FILE = "step_state.pt"  # in the run directory: the latest mid-epoch position (checkpoint_every_steps)


def _plain(value: Any) -> Any:
    """``value`` with numpy scalars and arrays turned into Python numbers and lists (a metric a user
    adds to the history may be one), so the state stays loadable with ``weights_only=True``."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    return value


def save_state(directory: str, method: Method, optimizer, epoch: int, step: int,
               history: list[dict], cfg: Config, schedule: dict | None = None,
               restarts: list[dict] | None = None, epoch_step: int = 0, name: str = STATE_FILE) -> None:
    """``schedule``: :meth:`raycl.train.model.Schedule.state`, so a resumed run knows its schedules;
    ``restarts``: the worker-group restarts so far (:mod:`raycl.train.recovery`); ``epoch_step``: the
    steps already taken in epoch ``epoch`` (0-based) when the state is saved mid-epoch."""
    state = {"model": method.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch,
             "step": step, "history": _plain(history), "config": cfg.to_dict()}
    if schedule is not None:
        state["schedule"] = _plain(schedule)
    if restarts:
        state["restarts"] = _plain(restarts)
    if epoch_step:
        state["epoch_step"] = epoch_step
    torch.save(state, os.path.join(directory, name))


def save_step_state(run_dir: str, *args, epoch_step: int, **kwargs) -> None:
    """The run's position mid-epoch (:func:`save_state`'s arguments) as ``run_dir/step_state.pt``,
    written beside it and then renamed over it, so a reader never meets a half-written file."""
    fs, path = filesystem(run_dir)
    fs.create_dir(path, recursive=True)
    with tempfile.TemporaryDirectory() as d:
        save_state(d, *args, epoch_step=epoch_step, name=STEP_FILE, **kwargs)
        with open(os.path.join(d, STEP_FILE), "rb") as src, \
                fs.open_output_stream(f"{path}/{STEP_FILE}.partial") as dst:
            dst.write(src.read())
    fs.move(f"{path}/{STEP_FILE}.partial", f"{path}/{STEP_FILE}")


def read_step_state(run_dir: str) -> dict[str, Any] | None:
    """The mid-epoch state :func:`save_step_state` left in ``run_dir``, or None."""
    fs, path = filesystem(run_dir)
    if fs.get_file_info(f"{path}/{STEP_FILE}").type == pafs.FileType.NotFound:
        return None
    with fs.open_input_file(f"{path}/{STEP_FILE}") as f:
        return read_state(f.read(), f"{run_dir}/{STEP_FILE}")


def read_state(data: bytes | str, name: str = STATE_FILE) -> dict[str, Any]:
    """A checkpoint's state from its bytes or a local path, loaded with ``weights_only=True``; a file
    holding anything else than tensors and plain data is refused with a ``ValueError`` naming it."""
    source = io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else data
    try:
        return torch.load(source, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"{name} is not a raycl checkpoint: it holds objects other than tensors and plain "
                         f"data, and raycl does not unpickle those ({first})") from None


def load_state(checkpoint: ray.train.Checkpoint) -> dict[str, Any]:
    with checkpoint.as_directory() as d:
        return read_state(os.path.join(d, STATE_FILE))


def latest_state(checkpoint: ray.train.Checkpoint | None, run_dir: str | None) -> dict[str, Any] | None:
    """The state a (re)started run goes on from: its last checkpoint's, or the mid-epoch one in
    ``run_dir`` when that is further on (a stale one, from before the checkpoint, is ignored)."""
    state = load_state(checkpoint) if checkpoint is not None else None
    mid = read_step_state(run_dir) if run_dir else None
    if mid is not None and mid["step"] > (state["step"] if state is not None else 0):
        return mid
    return state


def load_checkpoint(checkpoint: Any) -> tuple[dict, str, str]:
    """``(state, checkpoint_dir, run_dir)`` from a checkpoint directory, a run directory (its latest
    checkpoint) or a :class:`~raycl.api.RunResult`."""
    if hasattr(checkpoint, "checkpoint") and hasattr(checkpoint, "path"):
        checkpoint = checkpoint.checkpoint
    if checkpoint is None:
        raise ValueError("no checkpoint: the run saved none")
    checkpoint = str(checkpoint)
    fs, path = filesystem(checkpoint)
    if fs.get_file_info(f"{path}/{STATE_FILE}").type == pafs.FileType.NotFound:
        found = sorted(i.path for i in fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
                       if i.base_name.startswith("checkpoint_")
                       and fs.get_file_info(f"{i.path}/{STATE_FILE}").type != pafs.FileType.NotFound)
        if not found:
            raise ValueError(f"{checkpoint!r} holds neither {STATE_FILE} nor checkpoint_* folders")
        path = found[-1]
        checkpoint = path if "://" not in checkpoint else checkpoint.split("://")[0] + "://" + path
    with fs.open_input_file(f"{path}/{STATE_FILE}") as f:
        state = read_state(f.read(), f"{checkpoint}/{STATE_FILE}")
    run_dir = checkpoint.rstrip("/").rsplit("/", 1)[0] if Path(path).name.startswith("checkpoint_") \
        else checkpoint
    return state, checkpoint, run_dir
