"""One line per epoch on the driver's console, forwarded from the Ray Train controller.

The workers' own output (Ray Data's execution plans, Train's bookkeeping) stays in Ray's log files
when raycl starts Ray (``log_to_driver=False``); rank 0's reports reach the driver through a small
queue actor instead, the way Tune's ``TuneReportCallback`` forwards them.
"""

from __future__ import annotations

import queue as queue_module
import threading
from typing import Any

from ray.train import UserCallback
from ray.util.queue import Empty, Queue

from raycl.runtime import on_driver_node


def progress_line(row: dict[str, Any], epochs: int) -> str:
    """``[raycl] epoch 3/4 | loss 3.0920 | ... | kNN top-1 0.505`` for one report of rank 0."""
    if "loss" not in row:  # the kNN monitor before training
        parts = [f"[raycl] epoch {row['epoch']}/{epochs} (before training)"]
    else:
        parts = [f"[raycl] epoch {row['epoch']}/{epochs}", f"loss {row['loss']:.4f}",
                 f"lr {row['lr']:.4g}", f"{row['images_per_s']:.0f} img/s",
                 f"data wait {100 * row['data_wait_frac']:.0f}%"]
    names = {"pretext_top1": "pretext top-1", "pretext_cos": "pred/target cos"}
    for key in sorted(k for k in row if k.startswith("pretext_") and not k.endswith("top5")):
        parts.append(f"{names.get(key, key.replace('_', ' '))} {row[key]:.3f}")
    if "knn_top1" in row:
        parts.append(f"kNN top-1 {row['knn_top1']:.3f}")
    if row.get("bad_images"):
        parts.append(f"{row['bad_images']} undecodable images skipped")
    return " | ".join(parts)


class ProgressCallback(UserCallback):
    """Runs in the Train controller: puts each of rank 0's reports (its metrics row) on a queue."""

    def __init__(self, queue: Queue):
        self.queue = queue

    def after_report(self, run_context, metrics, checkpoint):
        if metrics and "epoch" in metrics[0]:
            self.queue.put(dict(metrics[0]))


class ProgressPrinter:
    """Driver side: ``with ProgressPrinter(epochs) as p: build_trainer(cfg, [p.callback]).fit()``
    prints a line for every row the callback sends while the run lasts (and every line put on
    ``p.queue`` as it is), and gives each row to ``trackers`` (:class:`raycl.tracking.Trackers`)."""

    def __init__(self, epochs: int, trackers=None):
        # beside the driver: a lost worker node must not take the restart messages with it
        self.queue = Queue(actor_options={"num_cpus": 0, **on_driver_node()})
        self.callback = ProgressCallback(self.queue)
        self.epochs, self.trackers = epochs, trackers
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._print, daemon=True)

    def _print(self) -> None:
        while True:
            try:
                item = self.queue.get(timeout=0.5)
                if isinstance(item, dict):
                    print(progress_line(item, self.epochs), flush=True)
                    self._track(item)
                else:
                    print(item, flush=True)
            except (Empty, queue_module.Empty):
                if self._stop.is_set():
                    return
            except Exception:  # the queue actor is gone (Ray shut down): nothing more to print
                return

    def _track(self, row: dict) -> None:
        if self.trackers is None:
            return
        try:
            self.trackers.log(row)
        except Exception as exc:  # a tracker's server or disk: the run goes on, its files keep the rows
            print(f"[raycl] tracking stopped at epoch {row.get('epoch')}: {type(exc).__name__}: {exc}",
                  flush=True)
            self.trackers = None

    def __enter__(self) -> "ProgressPrinter":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.queue.shutdown()
        if self.trackers is not None:
            self.trackers.close()
