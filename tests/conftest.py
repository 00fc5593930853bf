import os

import pytest

os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray for every test that needs it (start-up costs seconds on 2 cores)."""
    import ray

    from raycl.train.trainer import IDLE_WORKERS, LOCAL_TRAIN_ENV

    for var, value in LOCAL_TRAIN_ENV.items():  # as raycl's own local Ray: 0.5 s polls, no watcher actor
        os.environ.setdefault(var, value)
    if not ray.is_initialized():  # idle workers kept as raycl's own local Ray keeps them
        ray.init(num_cpus=4, _system_config={"num_workers_soft_limit": IDLE_WORKERS})
    yield ray
    ray.shutdown()


def pytest_collection_modifyitems(items):
    """A test that needs a Ray cluster (the shared one or its own head, directly or through a fixture)
    is a ``ray`` test whether or not it is marked, so ``-m "not ray"`` never starts Ray."""
    for item in items:
        if {"ray_local", "ray_head"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.ray)


@pytest.fixture(scope="session")
def tune_sweep(ray_local, tmp_path_factory):
    """One real sweep that the sweep tests check the tables of and the report and notebook tests
    draw: the 2 × 2 crop/colour slice of the augmentation grid (1 epoch, 600 images, one worker on
    half a CPU, a linear probe after each trial), plus a cell that fails inside its trial (a missing
    Parquet file) and one whose loss diverges. Returns ``(SweepResult, its console lines, the
    storage path, the grid)``; the sweep is ``augmentation`` under the storage path."""
    import contextlib
    import dataclasses
    import io

    import raycl
    from raycl.sweeps import GRIDS, Cell

    root = tmp_path_factory.mktemp("sweeps")
    base = GRIDS["augmentation"]
    cells = [c for c in base.cells("tiny")
             if {c.labels["first"], c.labels["second"]} <= {"crop", "color"}]
    cells.append(Cell({"data.source": "parquet", "data.path": str(root / "missing.parquet")},
                      {"broken": True}))  # fails inside its trial, after planning
    cells.append(Cell({"optim.lr": 1e30, "optim.warmup_epochs": 0}, {"diverges": True}))  # at a step
    fast = {"train.epochs": 1, "data.num_images": 600, "train.workers": 1,
            "train.cpus_per_worker": 0.5, "augment.cpus_per_actor": 0.5}
    grid = dataclasses.replace(base, cells=lambda p: cells, presets={"tiny": fast}, evaluate=("linear",))
    console = io.StringIO()
    with contextlib.redirect_stdout(console):
        out = raycl.sweep(grid, "tiny", seeds=1, storage_path=str(root), name="augmentation")
    lines = [line for line in console.getvalue().splitlines() if line.startswith("[raycl] ")]
    print(console.getvalue())  # still shown with pytest -s
    return out, lines, root, grid
