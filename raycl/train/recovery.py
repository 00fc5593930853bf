"""Recovery from a lost worker: Ray Train restarts the worker group (``train.max_failures``) and the
loop resumes from the last checkpoint; errors a retry cannot fix end the run at once.

Ray Train retries every worker-group error alike, a killed process as well as a diverged loss. Two
callbacks in the Train controller tell them apart before the controller acts on its decision:
:class:`Recovery` (a user callback: it sees reports and worker errors) records every other failure in
a driver-owned :class:`Failures` actor, where the restarted loop finds why and when it was restarted,
and :class:`NoRetry` (a controller callback, holding the same :class:`Recovery`: Ray Train calls the
two kinds from different places) stops a retry of a :data:`FATAL` error by raising it from the
failure-decision hook, which makes a controller error, which Ray Train does not retry.
"""

from __future__ import annotations

import time
from typing import Any

import ray
from ray.train import UserCallback
from ray.train.v2._internal.execution.callback import ControllerCallback  # DeveloperAPI in Ray 2.60

from raycl.data.decode import BadImageError
from raycl.train.model import DivergedError

# errors that would happen again after a restart: a non-finite loss, a damaged file under
# data.on_bad_image="fail" (bad config never reaches the workers: it is refused on the driver)
FATAL: tuple[type[BaseException], ...] = (DivergedError, BadImageError)


class RunFailedError(RuntimeError):
    """A run stopped by something other than its input: its workers out of retries, a lost controller;
    the original error is its ``__cause__``."""


def fatal_cause(error: BaseException | None) -> BaseException | None:
    """The :data:`FATAL` error behind ``error`` (Ray wraps it: a task error's ``cause``, a chain of
    ``__cause__``, a worker group's ``worker_failures``, a controller's ``controller_failure``),
    rebuilt as its own type from its message; None when there is none."""
    stack, seen = [error], set()
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        for kind in FATAL:
            if isinstance(e, kind):
                return kind(str(e.args[0]) if e.args else str(e))
        stack += [
            getattr(e, "cause", None),
            e.__cause__,
            getattr(e, "controller_failure", None),
            *(getattr(e, "worker_failures", None) or {}).values(),
        ]
    return None


def one_line(error: BaseException) -> str:
    """``Type: the message's first sentence`` (of its last line: Ray's errors carry whole tracebacks,
    and its process-death messages a paragraph of advice)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    text = lines[-1]
    if len(text) > 120 and ". " in text:
        text = text[: text.index(". ") + 1]
    return f"{type(error).__name__}: {text[:200]}"


@ray.remote(num_cpus=0)
class Failures:
    """The worker-group failures of one run, kept by the driver so they outlive the workers: the
    controller's :class:`Recovery` adds them, the restarted loop takes them."""

    def __init__(self) -> None:
        self.pending: list[dict[str, Any]] = []
        self.attempts = 0

    def add(self, failure: dict[str, Any]) -> None:
        self.pending.append(failure)

    def take(self) -> list[dict[str, Any]]:
        """The failures since the last call; rank 0 calls it once as each attempt starts."""
        taken, self.pending = self.pending, []
        self.attempts += 1
        return taken

    def count(self) -> int:
        """How many times the worker group started the loop."""
        return self.attempts


def callbacks(failures, max_failures: int, say=None) -> list:
    """The run's recovery callbacks for its ``RunConfig``: one :class:`Recovery`, and the
    :class:`NoRetry` that holds it (pickled together, they stay one object in the controller)."""
    recovery = Recovery(failures, max_failures, say)
    return [recovery, NoRetry(recovery)]


class Recovery(UserCallback):
    """In the Train controller: records each failure of the worker group (epoch, cause, time) and
    whether it is :data:`FATAL`; says each restart. ``say``: a queue for one console line per
    restart (the driver's progress printer), or None."""

    def __init__(self, failures, max_failures: int, say=None):
        self.failures, self.max_failures, self.say = failures, max_failures, say
        self.epoch = 0  # the last epoch rank 0 reported
        self.fatal: BaseException | None = None
        self.restarts, self.pending_cause = 0, ""

    def after_report(self, run_context, metrics, checkpoint):
        if metrics and "epoch" in metrics[0]:
            self.epoch = int(metrics[0]["epoch"])

    def after_exception(self, run_context, worker_exceptions):
        self.fatal = next((f for f in map(fatal_cause, worker_exceptions.values()) if f), None)
        if self.fatal is None:
            cause = "; ".join(f"rank {rank}: {one_line(e)}" for rank, e in sorted(worker_exceptions.items()))
            self.failures.add.remote({"failed_at": time.time(), "epoch": self.epoch + 1, "cause": cause})
            self.pending_cause = cause

    def decided(self, failure_decision) -> None:
        """Ray Train decided what to do about the last failure: no retry of a fatal one (raised from
        here, it becomes a controller error, which ends the run), a line for each restart."""
        retry = getattr(failure_decision, "name", "") == "RETRY"
        if retry and self.fatal is not None:
            raise self.fatal
        if retry:
            self.restarts += 1
            limit = "unlimited" if self.max_failures < 0 else f"at most {self.max_failures}"
            self._say(
                f"[raycl] epoch {self.epoch + 1}: lost the workers ({self.pending_cause}); restarting "
                f"from the last checkpoint (restart {self.restarts}, {limit})"
            )

    def _say(self, line: str) -> None:
        if self.say is not None:
            self.say.put(line)


class NoRetry(ControllerCallback):
    """The controller-side half of :class:`Recovery`: hands it each failure decision."""

    def __init__(self, recovery: Recovery):
        self.recovery = recovery

    def before_controller_execute_failure_decision(self, failure_decision):
        self.recovery.decided(failure_decision)
