"""Training: the model and its step (:mod:`~raycl.train.model`), checkpoints
(:mod:`~raycl.train.state`), the Ray Train worker loop (:mod:`~raycl.train.loop`) and the driver's
trainer builder (:mod:`~raycl.train.trainer`)."""

from raycl.train.loop import run_epoch, train_loop
from raycl.train.model import Schedule, build_model, train_step
from raycl.train.state import STATE_FILE, load_checkpoint, load_state, save_state
from raycl.train.trainer import (Trainer, build_trainer, check_cluster, ensure_ray, prepare_kernel,
                                 with_run_name)

__all__ = ["STATE_FILE", "Schedule", "Trainer", "build_model", "build_trainer", "check_cluster", "ensure_ray",
           "load_checkpoint", "load_state", "prepare_kernel", "run_epoch", "save_state", "train_loop",
           "train_step", "with_run_name"]
