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
    """Runs in the Train controller: puts a progress line for each of rank 0's reports on a queue."""

    def __init__(self, queue: Queue, epochs: int):
        self.queue, self.epochs = queue, epochs

    def after_report(self, run_context, metrics, checkpoint):
        if metrics and "epoch" in metrics[0]:
            self.queue.put(progress_line(metrics[0], self.epochs))


class ProgressPrinter:
    """Driver side: ``with ProgressPrinter(epochs) as p: build_trainer(cfg, [p.callback]).fit()``
    prints every line the callback sends while the run lasts."""

    def __init__(self, epochs: int):
        self.queue = Queue(actor_options={"num_cpus": 0})
        self.callback = ProgressCallback(self.queue, epochs)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._print, daemon=True)

    def _print(self) -> None:
        while True:
            try:
                print(self.queue.get(timeout=0.5), flush=True)
            except (Empty, queue_module.Empty):
                if self._stop.is_set():
                    return
            except Exception:  # the queue actor is gone (Ray shut down): nothing more to print
                return

    def __enter__(self) -> "ProgressPrinter":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.queue.shutdown()
