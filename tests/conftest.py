import os

import pytest

os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray for every test that needs it (start-up costs seconds on 2 cores)."""
    import ray

    from raycl.train.trainer import IDLE_WORKERS

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
