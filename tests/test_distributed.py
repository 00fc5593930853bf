"""N workers on the same global batch give the loss and gradients of one worker (Ray Train, gloo)."""

import os
import sys

import pytest
import ray.cloudpickle
import ray.train
import ray.train.torch
import torch
from ray.train import RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer

from raycl import distributed
from raycl.config import Config, preset
from raycl.train import build_model

ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

pytestmark = pytest.mark.ray


def _loss_and_grads(loop_config: dict) -> None:
    """Each rank takes its slice of the global batch, steps forward/backward, rank 0 saves results."""
    cfg = Config.from_dict(loop_config["config"])
    method = build_model(cfg).double()
    method.load_state_dict(loop_config["state"])
    model = ray.train.torch.prepare_model(method, parallel_strategy_kwargs={"broadcast_buffers": False})
    rank, world = distributed.rank(), distributed.world_size()
    b = loop_config["views"][0].shape[0] // world
    views = [v[rank * b:(rank + 1) * b] for v in loop_config["views"]]
    out = model(views)
    out["loss"].backward()
    loss = distributed.mean_over_ranks(out["loss"].detach())
    if rank == 0:
        torch.save({"loss": loss,
                    "grads": {n: p.grad.clone() for n, p in method.named_parameters()},
                    "buffers": {n: b.clone() for n, b in method.named_buffers()}},
                   loop_config["out"])
    ray.train.report({"loss": loss.item()})


def _run(workers: int, cfg: Config, state: dict, views: list, out: str, storage: str) -> dict:
    TorchTrainer(
        _loss_and_grads,
        train_loop_config={"config": cfg.to_dict(), "state": state, "views": views, "out": out},
        scaling_config=ScalingConfig(num_workers=workers, resources_per_worker={"CPU": 1}),
        run_config=RunConfig(name=f"equiv-{workers}", storage_path=storage),
    ).fit()
    return torch.load(out)


def test_two_workers_equal_one_worker_simclr(ray_local, tmp_path):
    cfg = preset("tiny").override({"train.workers": 2, "train.batch_size": 16})
    torch.manual_seed(0)
    state = build_model(cfg).double().state_dict()
    g = torch.Generator().manual_seed(1)
    views = [torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8, generator=g) for _ in range(2)]
    one = _run(1, cfg, state, views, os.path.join(tmp_path, "one.pt"), str(tmp_path))
    two = _run(2, cfg, state, views, os.path.join(tmp_path, "two.pt"), str(tmp_path))

    torch.testing.assert_close(two["loss"], one["loss"], rtol=1e-5, atol=0)
    assert one["grads"].keys() == two["grads"].keys()
    for name, grad in one["grads"].items():
        assert grad.abs().max() > 0, name  # every parameter takes part
        torch.testing.assert_close(two["grads"][name], grad, rtol=1e-5, atol=1e-12, msg=name)
    for name, buf in one["buffers"].items():  # global BN: same running statistics
        torch.testing.assert_close(two["buffers"][name].double(), buf.double(), rtol=1e-5, atol=1e-12,
                                   msg=name)
