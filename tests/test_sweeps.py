"""Sweeps: grids plan into runs, every experiment script dry-runs, and a small grid runs through Tune
into tidy tables, keeping the row of a trial that fails."""

import json
import os
import runpy
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest

import raycl
from raycl.checks import ConfigError
from raycl.sweeps import GRIDS, Cell, Grid, load_sweep, plan

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
SCRIPTS = {"augmentation_grid": {"augmentation": 49}, "color_strength": {"color_strength": 5},
           "temperature": {"temperature": 6},
           "projection_head": {"projection_head": 9, "simclrv2_head": 9},
           "batch_size": {"batch_size": 12},
           "moco_ablation": {"moco_momentum": 5, "mocov2_ablation": 5, "mocov2_temperature": 12},
           "byol_ablation": {"byol_batch": 10, "byol_augmentations": 22, "byol_tau": 5},
           "swav_multicrop": {"swav_multicrop": 8, "swav_prototypes": 4}}


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_every_experiment_dry_runs_its_cells(script, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", [f"{script}.py", "--dry-run"])
    with pytest.raises(SystemExit) as done:
        runpy.run_path(str(EXPERIMENTS / f"{script}.py"), run_name="__main__")
    assert done.value.code == 0
    out = capsys.readouterr().out
    headers = [line for line in out.splitlines() if line.startswith("# ")]
    assert [h.split(":")[0][2:] for h in headers] == list(SCRIPTS[script])
    cells = [line for line in out.splitlines() if line.startswith("c")]
    assert len(cells) == sum(SCRIPTS[script].values())
    if script == "augmentation_grid":
        assert "c002-s0  first=crop, second=color" in out and "c048-s0  first=rotate, second=rotate" in out


def test_every_experiment_script_is_tested():
    assert {p.stem for p in EXPERIMENTS.glob("*.py")} >= set(SCRIPTS)
    assert {g for grids in SCRIPTS.values() for g in grids} == set(GRIDS)


def test_plan_crosses_cells_and_seeds_and_names_what_a_preset_cannot_run():
    runs = plan(GRIDS["batch_size"], "tiny", seeds=2, overrides={"data.num_images": 200})
    assert len(runs) == 24 and {r.seed for r in runs} == {0, 1}
    assert all(r.overrides["train.seed"] == r.seed and r.overrides["preset"] == "tiny" for r in runs)
    skipped = [r for r in runs if r.skip]
    assert {r.spec.values["train.batch_size"] for r in skipped} == {256}
    assert "180 training images" in skipped[0].skip
    with pytest.raises(ConfigError, match="method.temperature"):
        plan(GRIDS["temperature"], "tiny", overrides={"method.temperature": 0.3})


def test_a_cell_a_method_cannot_take_is_skipped_with_the_reason():
    grid = Grid("g", "test", "q", "simclr", lambda p: [Cell({"method.prototypes": 10})])
    (run,) = plan(grid, "tiny")
    assert "belongs to swav" in run.skip


def test_a_small_grid_runs_through_tune_into_tidy_tables(tune_sweep):
    out, console, root, grid = tune_sweep
    assert len([line for line in console if "/6 c00" in line]) == 6  # one line per finished trial
    assert any("c004-s0" in line and "FAILED: " in line for line in console)

    t = out.trials.set_index("key")
    assert len(t) == 6 and t.index.is_unique
    assert {"augment.recipe", "first", "second", "status", "error", "knn_top1",
            "best_knn_top1", "wall_time_s", "checkpoint", "seed"} <= set(t.columns)
    ok = t[t["status"] == "TERMINATED"]
    assert len(ok) == 4 and ok["epochs"].eq(1).all() and ok["knn_top1"].between(0, 1).all()
    # each trial's linear probe, run after its training, reported with its last epoch
    assert ok["linear_val_top1"].between(0.1, 1).all() and ok["linear_test_top1"].between(0.1, 1).all()
    assert all(os.path.isfile(os.path.join(c, "state.pt")) for c in ok["checkpoint"])  # beside the probe
    assert sorted(zip(ok["augment.recipe"], ok["first"], ok["second"])) == [
        ("pair:color,color", "color", "color"), ("pair:color,crop", "color", "crop"),
        ("pair:crop,color", "crop", "color"), ("pair:crop,crop", "crop", "crop")]
    failed = t.loc["c004-s0"]
    assert failed["status"] == "ERROR" and "missing.parquet" in failed["error"]
    diverged = t.loc["c005-s0"]  # not retried, and the others went on
    assert diverged["status"] == "ERROR" and "simclr diverged: the loss is" in diverged["error"]
    assert "at step " in diverged["error"] and "(epoch 1)" in diverged["error"]

    h = out.history
    assert sorted(h.groupby("key")["epoch"].apply(list).items()) == sorted(
        [(k, [0, 1]) for k in ok.index] + [("c005-s0", [0])])  # per trial and epoch (0: before training)
    assert not h.duplicated(["trial_id", "epoch"]).any()
    last = h[h["epoch"] == 1]
    assert last["knn_top1"].notna().all() and last["linear_val_top1"].notna().all()

    sweep = root / "augmentation"
    meta = json.loads((sweep / "sweep.json").read_text())
    assert meta["grid"] == "augmentation" and len(meta["cells"]) == 6 and meta["versions"]["ray"]
    again = load_sweep(str(sweep))
    pd.testing.assert_frame_equal(again.trials, out.trials)
    for key in ok.index:  # each trial's run lies under runs/
        assert os.path.isdir(os.path.join(sweep, "runs", t.loc[key, "trial_id"]))
    with pytest.raises(FileExistsError, match="resume=True"):
        raycl.sweep(grid, "tiny", storage_path=str(root), name="augmentation")
    # Tune restores the trials it started: a resume with other seeds would run trials that are not there
    with pytest.raises(ValueError, match=r"another plan \(seeds, cells differ: it had seeds=\[0\]\)"):
        raycl.sweep(grid, "tiny", seeds=2, storage_path=str(root), name="augmentation", resume=True)


def _sweep_cli(tmp_path, *extra):
    return [sys.executable, "-m", "raycl", "sweep", "swav_multicrop", "--storage-path", str(tmp_path),
            "--name", "killed", "--set", "data.num_images=600", "--set", "train.epochs=1",
            "--set", "train.workers=1", "--set", "train.cpus_per_worker=0.5",
            "--set", "augment.cpus_per_actor=0.5", "--concurrency", "1",
            "--only", "method=swav", "--only", "augment.small_crops=0,2", *extra]


@pytest.mark.ray
def test_a_sweep_whose_driver_is_killed_resumes_with_every_trial_once(ray_local, tmp_path):
    env = {**os.environ, "RAY_ADDRESS": ray_local.get_runtime_context().gcs_address}
    trials = tmp_path / "killed" / "trials.parquet"
    driver = subprocess.Popen(_sweep_cli(tmp_path), env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    deadline = time.time() + 400
    while time.time() < deadline:  # kill it once the first trial has finished
        if trials.is_file() and (pd.read_parquet(trials)["status"] == "TERMINATED").any():
            break
        assert driver.poll() is None, "the sweep ended before it could be killed"
        time.sleep(1)
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait()
    before = pd.read_parquet(trials).set_index("key")
    first = before[before["status"] == "TERMINATED"]
    assert len(first) == 1

    start = time.time()
    resumed = subprocess.Popen(_sweep_cli(tmp_path, "--resume"), env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    interim = []  # the tables written while the resumed sweep runs keep the finished trials' numbers
    while resumed.poll() is None and time.time() < start + 900:
        try:
            if trials.stat().st_mtime > start:
                interim.append(pd.read_parquet(trials).set_index("key").loc[first.index, "knn_top1"])
        except (OSError, ValueError, KeyError):  # caught mid-write
            pass
        time.sleep(0.5)
    assert resumed.wait(timeout=60) == 0, resumed.stderr.read()[-3000:]
    assert interim and all(v.notna().all() for v in interim)
    out = load_sweep(str(tmp_path / "killed"))
    t = out.trials.set_index("key")
    assert sorted(t.index) == ["c000-s0", "c001-s0"] and (t["status"] == "TERMINATED").all()
    assert t["epochs"].eq(1).all()
    for key in first.index:  # finished trials were not run again
        assert t.loc[key, "trial_id"] == first.loc[key, "trial_id"]
        assert t.loc[key, "checkpoint"] == first.loc[key, "checkpoint"]
    h = out.history
    assert not h.duplicated(["key", "epoch"]).any()
    assert h.groupby("key")["epoch"].apply(sorted).map(lambda e: e == [0, 1]).all()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def ray_head(tmp_path):
    """A local head started for this test (foreground, stopped by its PID; never `ray stop`, which
    would stop every Ray cluster on the machine)."""
    port, dashboard = _free_port(), _free_port()
    # every port of its own: the session's Ray already holds the defaults (the dashboard agent's
    # 52365 among them, and a head without its agent never takes a job)
    agent_ports = [f"--dashboard-agent-listen-port={_free_port()}", f"--dashboard-agent-grpc-port={_free_port()}",
                   f"--metrics-export-port={_free_port()}", f"--runtime-env-agent-port={_free_port()}",
                   f"--ray-client-server-port={_free_port()}"]
    temp = tempfile.mkdtemp(prefix="rh", dir="/tmp")  # short: Ray's socket paths have a length limit
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)
    ray_bin = str(Path(sys.executable).with_name("ray"))
    head = subprocess.Popen([ray_bin, "start", "--head", "--block", "--num-cpus=3", f"--port={port}",
                             f"--dashboard-port={dashboard}", "--dashboard-host=127.0.0.1",
                             f"--temp-dir={temp}", "--disable-usage-stats", *agent_ports],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield f"http://127.0.0.1:{dashboard}"
    finally:
        head.send_signal(signal.SIGTERM)
        try:
            head.wait(timeout=90)
        except subprocess.TimeoutExpired:
            head.kill()
        shutil.rmtree(temp, ignore_errors=True)


JOB = """
import raycl
from raycl.sweeps import Cell, Grid
grid = Grid("job", "test", "q", "simclr", lambda p: [Cell({"method.temperature": 0.2})],
            presets={"tiny": {"train.epochs": 1, "data.num_images": 600, "train.workers": 1,
                              "train.cpus_per_worker": 0.5, "augment.cpus_per_actor": 0.5}})
raycl.sweep(grid, "tiny", storage_path=STORAGE, name="submitted")
"""


@pytest.mark.ray
def test_a_sweep_submitted_as_a_ray_job_writes_its_tables(ray_head, tmp_path, monkeypatch):
    from ray.job_submission import JobStatus, JobSubmissionClient

    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    code = JOB.replace("STORAGE", repr(str(tmp_path)))
    deadline = time.time() + 180
    while True:  # the dashboard, then its job agent, take a few seconds to answer
        try:
            client = JobSubmissionClient(ray_head)
            job = client.submit_job(entrypoint=f"{sys.executable} -c {shlex.quote(code)}",
                                    runtime_env={"working_dir": str(EXPERIMENTS.parent),
                                                 "env_vars": {"RAY_AUTH_MODE": "disabled"}})
            break
        except Exception:
            assert time.time() < deadline, "the test's Ray head did not take the job"
            time.sleep(1)
    while client.get_job_status(job) not in {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED}:
        assert time.time() < deadline + 600, "the job did not finish"
        time.sleep(2)
    assert client.get_job_status(job) == JobStatus.SUCCEEDED, client.get_job_logs(job)[-3000:]
    out = load_sweep(str(tmp_path / "submitted"))
    assert list(out.trials["status"]) == ["TERMINATED"] and out.trials.loc[0, "epochs"] == 1
    assert "results in" in client.get_job_logs(job)


def test_a_slice_keeps_the_cells_it_names_with_their_grid_keys():
    runs = plan(GRIDS["augmentation"], "tiny", only={"first": ["crop", "color"], "second": ["color"]})
    assert [(r.key, dict(r.spec.labels)) for r in runs] == [
        ("c002-s0", {"first": "crop", "second": "color"}), ("c016-s0", {"first": "color", "second": "color"})]
    with pytest.raises(ValueError, match="cannot slice on 'third'"):
        plan(GRIDS["augmentation"], "tiny", only={"third": ["crop"]})
    with pytest.raises(ValueError, match="no cell"):
        plan(GRIDS["augmentation"], "tiny", only={"first": ["warp"]})


def test_an_evaluation_report_joins_its_epoch_row_and_names_its_columns():
    from raycl.sweeps.tables import evaluation_columns, history_rows

    (run,) = plan(GRIDS["projection_head"], "tiny", only={"head": ["none"]})
    reports = [{"epoch": 0, "knn_top1": 0.2}, {"epoch": 1, "knn_top1": 0.4, "loss": 3.0},
               {"epoch": 1, "linear_val_top1": 0.5, "time_total_s": 9.0}]
    rows = history_rows(run, "t0", reports)
    assert [r["epoch"] for r in rows] == [0, 1]
    assert rows[1]["knn_top1"] == 0.4 and rows[1]["loss"] == 3.0 and rows[1]["linear_val_top1"] == 0.5
    evaluation = pd.DataFrame([
        {"protocol": "linear", "split": "val", "features": "h", "task": "class", "top1": 0.5},
        {"protocol": "linear_z", "split": "test", "features": "g2", "task": "class", "top1": 0.4},
        {"protocol": "transform", "split": "val", "features": "h", "task": "rotation", "top1": 0.9}])
    assert evaluation_columns(evaluation) == {"linear_val_top1": 0.5, "linear_z_test_top1": 0.4,
                                              "transform_rotation_h_val_top1": 0.9}
    with pytest.raises(ConfigError, match="protocols"):
        raycl.sweep("projection_head", evaluate=["linear_probe"], storage_path="/nonexistent")
    with pytest.raises(ConfigError, match="storage_path = 's3://bucket/sweeps'.*NFS"):
        raycl.sweep("temperature", storage_path="s3://bucket/sweeps")


def test_concurrency_leaves_ray_data_a_cpu_and_the_scheduler_is_checked_before_ray_starts():
    from ray.tune.schedulers import ASHAScheduler

    from raycl.config import preset
    from raycl.sweeps.runner import _scheduler, max_concurrent

    half = preset("tiny").override({"train.workers": 1, "train.cpus_per_worker": 0.5,
                                    "augment.compute": "tasks", "augment.cpus_per_actor": 0.5}).validate()
    # a trial reserves 0.5 + 0.5 CPUs; one CPU is kept for Ray Data's reads and the kNN sets
    assert [max_concurrent(half, cpus) for cpus in (1, 2, 3, 100)] == [1, 1, 2, 99]
    big = preset("tiny").override({"train.workers": 2, "train.cpus_per_worker": 1, "augment.actors": 4,
                                   "augment.compute": "actors", "augment.cpus_per_actor": 1}).validate()
    assert max_concurrent(big, 64) == 10  # (64 - 1) // (2 + 4)
    assert _scheduler(None) is None and isinstance(_scheduler("asha"), ASHAScheduler)
    with pytest.raises(ValueError, match="scheduler = 'hyperband' is not allowed: None or 'asha'"):
        raycl.sweep("temperature", "tiny", scheduler="hyperband", storage_path="/nonexistent/never")


def test_the_status_line_names_the_running_trials_epochs_and_counts_the_rest():
    from types import SimpleNamespace

    from raycl.sweeps.runner import _Tables

    runs = plan(GRIDS["temperature"], "tiny", seeds=2)
    tables = _Tables("/nowhere", runs)
    trial = lambda key, status: SimpleNamespace(trial_id=f"t-{key}", status=status, config={"run": key})
    # Tune creates trials only as they fit: the 5 still to start are not among its trials yet
    trials = [trial(r.key, status) for r, status in zip(runs, ["TERMINATED"] + ["RUNNING"] * 6)]
    tables.finished = 1
    tables.results = {"t-c000-s1": [{"epoch": 0, "knn_top1": 0.3}, {"epoch": 2, "knn_top1": 0.4123}],
                      "t-c001-s0": [{"epoch": 1}]}
    epochs = GRIDS["temperature"].presets.get("tiny", {}).get("train.epochs") or \
        raycl.config.preset("tiny").train.epochs
    assert tables.status(trials) == (
        f"[raycl] 1/12 done, 6 running: c000-s1 epoch 2/{epochs} kNN 0.412, c001-s0 epoch 1/{epochs}, "
        f"c001-s1 starting, c002-s0 starting and 2 more; 5 waiting")
