"""Recovery: a lost worker restarts the group from the last checkpoint; errors a retry cannot fix
end the run at once; the best checkpoint is kept whole, and a cut-short one is never the latest."""

import json
import os
import signal
import threading
import time

import pandas as pd
import pytest
import ray
from ray.exceptions import ActorDiedError
from ray.train import ControllerError, WorkerGroupError

import raycl
from raycl.train.best import KeepBest, best_so_far
from raycl.data.decode import BadImageError
from raycl.train.model import DivergedError
from raycl.train.recovery import Failures, NoRetry, RunFailedError, callbacks, fatal_cause, one_line


class _Decision:  # Ray Train's FailureDecision, by name
    def __init__(self, name):
        self.name = name


class _Queue:
    def __init__(self):
        self.lines = []

    def put(self, line):
        self.lines.append(line)


def test_fatal_cause_finds_the_error_behind_rays_wrapping():
    diverged = DivergedError("simclr diverged: the loss is nan at step 3 (epoch 1)")
    wrapped = WorkerGroupError("Training failed", worker_failures={1: diverged})
    found = fatal_cause(wrapped)
    assert type(found) is DivergedError and str(found) == str(diverged)
    assert type(fatal_cause(ControllerError(BadImageError("cannot decode image a.jpg")))) is BadImageError
    chained = RuntimeError("outer")
    chained.__cause__ = BadImageError("cannot decode image b.jpg")
    assert "b.jpg" in str(fatal_cause(chained))
    assert fatal_cause(WorkerGroupError("lost", worker_failures={0: ActorDiedError()})) is None
    assert fatal_cause(None) is None


def test_a_cause_is_one_readable_line():
    death = RuntimeError(
        "The actor is dead because its worker process has died. Worker exit type: "
        "SYSTEM_ERROR Worker exit detail: Worker unexpectedly exits with a connection error code "
        "2. End of file. Some common causes include: (1) the process was killed by the OOM"
    )
    assert one_line(death) == "RuntimeError: The actor is dead because its worker process has died."
    assert one_line(ValueError("Traceback ...\n  File x\nValueError: bad")) == "ValueError: ValueError: bad"
    assert one_line(RuntimeError()) == "RuntimeError"


def test_recovery_stops_a_retry_of_a_fatal_error_and_records_a_lost_worker(ray_local):
    failures = Failures.remote()
    say = _Queue()
    # as Ray Train gets them: one pickle (the RunConfig), the user and the controller callback apart
    recovery, no_retry = ray.cloudpickle.loads(ray.cloudpickle.dumps(callbacks(failures, 3, say)))
    assert isinstance(no_retry, NoRetry) and no_retry.recovery is recovery
    say = recovery.say
    recovery.after_report(None, [{"epoch": 2, "loss": 1.0}], None)

    recovery.after_exception(None, {1: ActorDiedError()})  # a lost worker: retried, and recorded
    no_retry.before_controller_execute_failure_decision(_Decision("RETRY"))
    (failure,) = ray.get(failures.take.remote())
    assert failure["epoch"] == 3 and failure["cause"].startswith("rank 1: ActorDiedError")
    assert "restarting from the last checkpoint (restart 1, at most 3)" in say.lines[0]
    assert ray.get(failures.take.remote()) == []  # taken once

    recovery.after_exception(None, {0: DivergedError("simclr diverged"), 1: RuntimeError("gloo reset")})
    with pytest.raises(DivergedError, match="simclr diverged"):  # no retry: the controller raises it
        no_retry.before_controller_execute_failure_decision(_Decision("RETRY"))
    no_retry.before_controller_execute_failure_decision(_Decision("RAISE"))  # Ray raises it itself
    assert ray.get(failures.take.remote()) == [] and len(say.lines) == 1


class _Checkpoint:  # what Ray Train hands a callback: a persisted folder on a filesystem
    def __init__(self, path):
        import pyarrow.fs

        self.path, self.filesystem = str(path), pyarrow.fs.LocalFileSystem()


def _checkpoint(root, name: str, payload: str) -> _Checkpoint:
    folder = root / name
    folder.mkdir()
    (folder / "state.pt").write_text(payload)
    return _Checkpoint(folder)


def test_the_best_checkpoint_by_knn_is_kept_whole_and_survives_a_resume(tmp_path):
    run = tmp_path / "run"
    keep = KeepBest(str(run))
    for epoch, knn in [(1, 0.30), (2, 0.50), (3, 0.40)]:
        keep.after_report(
            None, [{"epoch": epoch, "knn_top1": knn}], _checkpoint(tmp_path, f"c{epoch}", f"e{epoch}")
        )
    keep.after_report(None, [{"epoch": 4}], _checkpoint(tmp_path, "c4", "e4"))  # no kNN this epoch
    keep.after_report(None, [{"epoch": 5, "knn_top1": 0.9}], None)  # no checkpoint this epoch
    assert (run / "best" / "state.pt").read_text() == "e2"
    assert json.loads((run / "best" / "best.json").read_text())["epoch"] == 2
    assert sorted(p.name for p in run.iterdir()) == ["best"]  # no temporary folder left

    resumed = KeepBest(str(run))  # a resumed run: beaten only by a better kNN than the saved best
    resumed.after_report(None, [{"epoch": 6, "knn_top1": 0.45}], _checkpoint(tmp_path, "c6", "e6"))
    assert (run / "best" / "state.pt").read_text() == "e2"
    resumed.after_report(None, [{"epoch": 7, "knn_top1": 0.55}], _checkpoint(tmp_path, "c7", "e7"))
    assert (run / "best" / "state.pt").read_text() == "e7" and best_so_far(str(run)) == 0.55


def test_a_checkpoint_cut_short_is_never_the_latest(tmp_path):
    import torch

    from raycl.api import _latest_checkpoint

    for i, name in enumerate(["checkpoint_a", "checkpoint_b"]):
        (tmp_path / name).mkdir()
        torch.save({"epoch": i + 1}, tmp_path / name / "state.pt")
        os.utime(tmp_path / name / "state.pt", (1000 + i, 1000 + i))
    assert _latest_checkpoint(str(tmp_path)).endswith("checkpoint_b")
    whole = (tmp_path / "checkpoint_b" / "state.pt").read_bytes()
    (tmp_path / "checkpoint_b" / "state.pt").write_bytes(whole[: len(whole) // 2])  # a crash mid-copy
    os.utime(tmp_path / "checkpoint_b" / "state.pt", (1001, 1001))
    assert _latest_checkpoint(str(tmp_path)).endswith("checkpoint_a")


def _pids(title: bytes = b"ray::RayTrainWorker") -> list[int]:
    """PIDs of this cluster's live processes titled ``title...`` (Ray Train's workers by default):
    started by its raylet (another Ray on the machine has its own)."""
    raylet = ray._private.worker.global_worker.node.all_processes["raylet"][0].process.pid
    pids = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                name = f.read()
            with open(f"/proc/{entry}/stat") as f:
                parent = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if name.startswith(title) and parent == raylet:
            pids.append(int(entry))
    return sorted(pids)


def _run_in_thread(out: dict, **kwargs) -> threading.Thread:
    def train():
        try:
            out["result"] = raycl.run(method="simclr", workers=2, preset="tiny", **kwargs)
        except BaseException as exc:  # surfaced by the test's assertions
            out["error"] = exc

    thread = threading.Thread(target=train)
    thread.start()
    return thread


def _wait_for_first_checkpoint(run_dir) -> None:
    # Ray Train writes its snapshot when every rank has reported the checkpoint (a checkpoint folder
    # alone may be one that a kill in between leaves unregistered)
    deadline = time.monotonic() + 300
    while not (run_dir / "checkpoint_manager_snapshot.json").exists() and time.monotonic() < deadline:
        time.sleep(0.2)


@pytest.mark.ray
def test_a_lost_controller_ends_the_run_in_one_line_and_it_resumes(ray_local, tmp_path):
    """Ray Train's controller killed after the first checkpoint: the run says so in one line with where
    its history is and how to continue, keeps that history, and resume=True finishes it."""
    out: dict = {}
    settings = {
        "storage_path": str(tmp_path),
        "name": "ctl",
        "eval.knn_at_init": False,
        "data.num_images": 2000,
    }
    earlier = set(_pids(b"ray::TrainController"))  # earlier runs' may linger; PIDs wrap, so not max()
    thread = _run_in_thread(out, epochs=3, **settings)
    _wait_for_first_checkpoint(tmp_path / "ctl")
    (controller,) = set(_pids(b"ray::TrainController")) - earlier
    os.kill(controller, signal.SIGKILL)
    thread.join(timeout=600)
    error = out["error"]
    assert isinstance(error, RunFailedError) and len(str(error).splitlines()) == 1
    assert "controller process died" in str(error) and "resume=True" in str(error)
    kept = pd.read_parquet(tmp_path / "ctl" / "history.parquet")
    assert kept["epoch"].iloc[0] == 1
    resumed = raycl.run(method="simclr", workers=2, preset="tiny", epochs=3, resume=True, **settings)
    assert list(resumed.history["epoch"]) == [1, 2, 3]


@pytest.mark.ray
def test_a_killed_worker_is_replaced_and_the_run_finishes_every_epoch(ray_local, tmp_path, capsys):
    """2 workers; once the first epoch's checkpoint is registered, one worker process is killed (SIGKILL
    by PID, mid-way through epoch 2): the group restarts from that checkpoint, the run ends with every
    epoch once, its step counter rising, and the restart in its history and restarts.parquet."""
    out: dict = {}
    thread = _run_in_thread(
        out,
        epochs=4,
        storage_path=str(tmp_path),
        name="lost",
        **{"eval.knn_at_init": False, "data.num_images": 2000},
    )
    _wait_for_first_checkpoint(tmp_path / "lost")
    pids = _pids()
    assert len(pids) == 2, pids
    os.kill(pids[-1], signal.SIGKILL)
    killed_at = time.time()
    thread.join(timeout=600)
    assert "error" not in out, out.get("error")
    result = out["result"]

    h = result.history
    assert list(h["epoch"]) == [1, 2, 3, 4]  # every epoch once, the lost one redone
    assert h["step"].is_monotonic_increasing and h["step"].iloc[0] > 0
    assert list(h["restarts"]) == [0, 1, 1, 1]
    restarts = pd.read_parquet(os.path.join(result.path, "restarts.parquet"))
    assert len(restarts) == 1
    row = restarts.iloc[0]
    assert row["epoch"] == 2 and row["resumed_from_epoch"] == 1
    assert "rank" in row["cause"] and row["failed_at"] >= killed_at - 1
    assert 0 < row["lost_s"] < 120
    best = json.loads(open(os.path.join(result.best_checkpoint, "best.json")).read())
    assert best["knn_top1"] == h["knn_top1"].max() and best["epoch"] == h.loc[h["knn_top1"].idxmax(), "epoch"]
    console = capsys.readouterr().out
    assert console.count("lost the workers") == 1 and "restart 1, at most 3" in console
    assert console.count("[raycl] epoch 4/4") == 1


@pytest.mark.ray
def test_a_worker_lost_mid_epoch_resumes_from_the_last_step_checkpoint(ray_local, tmp_path):
    """train.checkpoint_every_steps: a worker killed in the first epoch, before any epoch checkpoint,
    once the run has saved its position at step 40 or later: the group resumes from that step, not
    from scratch, skips the batches already trained on and ends with the steps of an unbroken run."""
    from raycl.train.state import STEP_FILE, read_step_state

    out: dict = {}
    run_dir = tmp_path / "steps"
    thread = _run_in_thread(out, epochs=2, storage_path=str(tmp_path), name="steps",
                            **{"eval.knn_at_init": False, "data.num_images": 2000, "train.batch_size": 16,
                               "train.checkpoint_every_steps": 20})
    deadline = time.monotonic() + 300
    saved = None
    while time.monotonic() < deadline and "result" not in out and "error" not in out:
        if (run_dir / STEP_FILE).exists():
            saved = read_step_state(str(run_dir))
            if saved["step"] >= 40:
                break
        time.sleep(0.05)
    assert saved is not None and saved["step"] >= 40 and saved["epoch"] == 0, saved and saved["step"]
    os.kill(_pids()[-1], signal.SIGKILL)
    thread.join(timeout=600)
    assert "error" not in out, out.get("error")
    h = out["result"].history
    per_epoch = int(h["step"].iloc[0])
    assert list(h["epoch"]) == [1, 2] and list(h["step"]) == [per_epoch, 2 * per_epoch]
    row = pd.read_parquet(os.path.join(out["result"].path, "restarts.parquet")).iloc[0]
    assert row["resumed_from_epoch"] == 0 and 40 <= row["resumed_from_step"] < per_epoch
