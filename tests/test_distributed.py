"""N workers on the same global batch behave like one worker (Ray Train, gloo, float64).

One Ray Train run per worker count (1, 2, and 4 on half a CPU each, more workers than this machine
has cores) goes through one optimizer step of every registered method, so the suite pays the
start-up three times:
- every method: equal loss, gradients and state after the step (weights, global-BN statistics,
  queues, momentum networks) with 2 and 4 workers as with 1 (MoCo with global BN for its queries,
  which makes it comparable; the paper's per-worker BN is its preset);
- MoCo: every worker holds the same queue, equal to one worker's, in the same order;
- BYOL: the target equals the EMA formula on every worker, and one worker's;
- GlobalBatchNorm on uneven shares (3 and 5 rows; 1, 2, 1 and 4) equals BN on the whole batch in one
  process;
- MoCo and SwAV checkpointed on 2 workers resume on 1 with the same next-step loss, which 4 workers
  also take.
"""

import copy
import os
import sys
from dataclasses import dataclass

import pytest
import ray.cloudpickle
import ray.train
import ray.train.torch
import torch
from ray.train import RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer

from support import EXERCISE, make_views

from raycl import distributed
from raycl.config import Config, preset
from raycl.methods import METHODS, Progress
from raycl.methods.momentum import momentum_at
from raycl.models import GlobalBatchNorm
from raycl.train import build_model, train_step

ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

pytestmark = pytest.mark.ray

BATCH = 16


def _run_case(case: dict) -> dict:
    """This rank's slice of the global batch through one forward/backward (and a step if asked)."""
    cfg = Config.from_dict(case["config"])
    method = build_model(cfg).double()
    method.load_state_dict(case["state"])
    model = ray.train.torch.prepare_model(method, parallel_strategy_kwargs={"broadcast_buffers": False})
    rank, world = distributed.rank(), distributed.world_size()
    b = case["views"][0].shape[0] // world
    views = [v[rank * b:(rank + 1) * b] for v in case["views"]]
    optimizer = torch.optim.SGD(method.parameters(), lr=0.1)
    out = train_step(model, optimizer, views, method, Progress(2, 0, 5, 5))
    return {"loss": distributed.mean_over_ranks(out["loss"].detach()),
            "grads": {n: p.grad.clone() for n, p in method.named_parameters() if p.grad is not None},
            "state": {n: t.clone() for n, t in method.state_dict().items()}}


BN_SHARES = {1: [(0, 8)], 2: [(0, 3), (3, 8)], 4: [(0, 1), (1, 3), (3, 4), (4, 8)]}  # rows per rank


def _bn_input() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(5)
    return torch.randn(8, 3, 5, 5, generator=g, dtype=torch.float64) * 2 + 1, \
        torch.randn(8, 3, 5, 5, generator=g, dtype=torch.float64)


def _bn_reference(bn: torch.nn.Module) -> dict:
    """Two training passes of ``bn`` (the second on a shifted batch, so the running averages of
    momentum=None weigh both) on this rank's rows; the loss is the sum over ranks of (y * w)."""
    x_all, w_all = _bn_input()
    lo, hi = BN_SHARES[distributed.world_size()][distributed.rank()]
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([0.5, 1.5, -1.0]))
        bn.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
    bn(x_all[lo:hi] * 0.5 - 2)
    x = x_all[lo:hi].clone().requires_grad_(True)
    y = bn(x)
    (y * w_all[lo:hi]).sum().backward()
    return {"y": y.detach(), "x_grad": x.grad, "weight_grad": bn.weight.grad, "bias_grad": bn.bias.grad,
            "running_mean": bn.running_mean.clone(), "running_var": bn.running_var.clone()}


def _resume_case(case: dict) -> dict:
    """A run checkpointed after one step (model and optimizer state, as ``state.pt`` holds them) and
    its next step: on 2 workers both steps; on 1 worker the next step from the 2 workers' checkpoint."""
    cfg = Config.from_dict(case["config"])
    method = build_model(cfg).double()
    model = ray.train.torch.prepare_model(method, parallel_strategy_kwargs={"broadcast_buffers": False})
    optimizer = torch.optim.SGD(method.parameters(), lr=0.1, momentum=0.9)
    rank, world = distributed.rank(), distributed.world_size()

    def step(views, progress):
        b = views[0].shape[0] // world
        return train_step(model, optimizer, [v[rank * b:(rank + 1) * b] for v in views], method, progress)

    out = {}
    if "checkpoint" in case:
        method.load_state_dict(case["checkpoint"]["model"])
        optimizer.load_state_dict(case["checkpoint"]["optimizer"])
    else:
        method.load_state_dict(case["state"])
        step(case["views"], Progress(0, 0, 5, 5))
        out["checkpoint"] = {"model": {n: t.clone() for n, t in method.state_dict().items()},
                             "optimizer": copy.deepcopy(optimizer.state_dict())}
    out["loss"] = distributed.mean_over_ranks(step(case["next_views"], Progress(1, 0, 5, 5))["loss"])
    return out


def _loop(loop_config: dict) -> None:
    results = {name: _run_case(case) for name, case in loop_config["cases"].items()}
    results["resume"] = {name: _resume_case(case) for name, case in loop_config["resume"].items()}
    results["global_bn"] = _bn_reference(GlobalBatchNorm(3, momentum=None).double().train())
    rank = distributed.rank()  # ranks holding 3 and 4 rows (a kNN set's uneven shares)
    results["uneven"] = distributed.gather_uneven(torch.arange(10 * rank, 10 * rank + 3 + rank))
    torch.save(results, os.path.join(loop_config["out"], f"rank{distributed.rank()}.pt"))
    ray.train.report({"done": 1})


def _fit(workers: int, cases: dict, resume: dict, out: str, storage: str, cpus: float = 1.0) -> list[dict]:
    os.makedirs(out, exist_ok=True)
    TorchTrainer(
        _loop,
        train_loop_config={"cases": cases, "resume": resume, "out": out},
        scaling_config=ScalingConfig(num_workers=workers, resources_per_worker={"CPU": cpus}),
        run_config=RunConfig(name=f"equiv-{workers}", storage_path=storage),
    ).fit()
    return [torch.load(os.path.join(out, f"rank{r}.pt")) for r in range(workers)]


# cross-worker parts on: MoCo's queries with global BN (comparable across worker counts), BYOL's
# target moving visibly
# MoCo with 4 key-BN groups (more groups than workers; the same groups with 1 and 2 workers)
COMPARABLE = {"moco": {"model.sync_bn": True, "method.key_bn_groups": 4},
              "mocov2": {"model.sync_bn": True, "method.key_bn_groups": 4},
              "byol": {"method.momentum": 0.9}}


# cases beside one per method: (method, overrides)
VARIANTS = {"simclr+multicrop": ("simclr", {"augment.small_crops": 2})}


def _case(method: str, overrides: dict | None = None) -> dict:
    cfg = preset("tiny", method).override({
        "train.workers": 2, "train.batch_size": BATCH, **EXERCISE.get(method, {}),
        **COMPARABLE.get(method, {}), **(overrides or {})}).validate()
    torch.manual_seed(0)
    state = build_model(cfg).double().state_dict()
    return {"config": cfg.to_dict(), "state": state, "views": make_views(cfg, BATCH, seed=1)}


# queues checkpointed on 2 workers and resumed on 1: MoCo's keys; SwAV's embeddings, full after the
# first step so that the next one's Sinkhorn reads them
RESUMED = {"moco": {}, "swav": {"method.queue_size": BATCH, "method.queue_start_epoch": 0}}


def _resume_cases() -> dict:
    cases = {}
    for method, overrides in RESUMED.items():
        case = _case(method, overrides)
        case["next_views"] = make_views(Config.from_dict(case["config"]), BATCH, seed=2)
        cases[method] = case
    return cases


@dataclass
class Runs:
    cases: dict
    one: list[dict]  # per rank: what _loop saved
    two: list[dict]
    four: list[dict]


@pytest.fixture(scope="module")
def runs(ray_local, tmp_path_factory):
    cases = {method: _case(method) for method in METHODS}
    cases.update({name: _case(method, overrides) for name, (method, overrides) in VARIANTS.items()})
    tmp = tmp_path_factory.mktemp("equiv")
    resume = _resume_cases()
    two = _fit(2, cases, resume, str(tmp / "two"), str(tmp))
    # the 1-worker run resumes from the 2 workers' checkpoints (rank 0 writes state.pt)
    resume_on_one = {name: {**case, "checkpoint": two[0]["resume"][name]["checkpoint"]}
                     for name, case in resume.items()}
    one = _fit(1, cases, resume_on_one, str(tmp / "one"), str(tmp))
    four = _fit(4, cases, resume, str(tmp / "four"), str(tmp), cpus=0.5)
    return Runs(cases, one, two, four)


def _assert_same_loss_and_grads(one: dict, two: dict) -> None:
    torch.testing.assert_close(two["loss"], one["loss"], rtol=1e-5, atol=0)
    assert one["grads"].keys() == two["grads"].keys()
    for name, grad in one["grads"].items():
        assert grad.abs().max() > 0, name  # every parameter takes part
        torch.testing.assert_close(two["grads"][name], grad, rtol=1e-5, atol=1e-12, msg=name)


@pytest.mark.parametrize("workers", [2, 4])
@pytest.mark.parametrize("method", [*METHODS, *VARIANTS])
def test_n_workers_equal_one_worker(runs, method, workers):
    one, many = runs.one, runs.two if workers == 2 else runs.four
    _assert_same_loss_and_grads(one[0][method], many[0][method])
    for rank in range(workers):  # weights, BN statistics, queues and momentum networks after the step
        for name, value in one[0][method]["state"].items():
            if name.startswith("key_") and ("running_" in name or "num_batches" in name):
                continue  # MoCo's shuffled BN: per-group statistics, never read (keys use batch BN)
            torch.testing.assert_close(many[rank][method]["state"][name], value, rtol=1e-5, atol=1e-12,
                                       msg=f"rank {rank} of {workers}: {name}")


def test_moco_queue_is_identical_on_every_worker_and_to_one_worker(runs):
    q1 = runs.one[0]["moco"]["state"]["queue.keys"]
    assert int(runs.one[0]["moco"]["state"]["queue.ptr"]) == BATCH
    for rank, result in [*enumerate(runs.two), *enumerate(runs.four)]:
        assert int(result["moco"]["state"]["queue.ptr"]) == BATCH
        torch.testing.assert_close(result["moco"]["state"]["queue.keys"], q1, rtol=1e-6, atol=1e-9,
                                   msg=f"rank {rank}")
    assert not torch.equal(q1[:BATCH], runs.cases["moco"]["state"]["queue.keys"][:BATCH])  # it moved


def test_byol_target_after_a_step_is_the_ema_on_every_worker(runs):
    cases, one, two = runs.cases, runs.one, runs.two
    before = cases["byol"]["state"]
    tau = momentum_at(2, 5, 0.9, "cosine")
    for result in (one[0], two[0], two[1]):
        state = result["byol"]["state"]
        for name in state:
            if name.startswith(("target_backbone.", "target_head.")) and "running" not in name \
                    and "num_batches" not in name:
                online = state[name.replace("target_", "", 1)]
                torch.testing.assert_close(state[name], tau * before[name] + (1 - tau) * online,
                                           msg=name)
    for name, value in one[0]["byol"]["state"].items():  # and 2 workers took the same step
        torch.testing.assert_close(two[0]["byol"]["state"][name], value, rtol=1e-5, atol=1e-12,
                                   msg=name)


@pytest.mark.parametrize("method", RESUMED)
def test_a_run_checkpointed_on_two_workers_resumes_on_one(runs, method):
    """The queue (MoCo's keys, SwAV's embeddings) is whole in every checkpoint: the step after a
    resume on 1 worker has the loss of the step the 2 workers took from the same state, and of
    the one 4 workers took."""
    one, two = runs.one, runs.two
    state = two[0]["resume"][method]["checkpoint"]["model"]
    queue = state["queue.keys"] if method == "moco" else state["queue"]
    assert queue.abs().sum() > 0 and (method == "moco" or int(state["queue_rows"]) == BATCH)
    torch.testing.assert_close(one[0]["resume"][method]["loss"], two[0]["resume"][method]["loss"],
                               rtol=1e-5, atol=0)
    torch.testing.assert_close(runs.four[0]["resume"][method]["loss"], two[0]["resume"][method]["loss"],
                               rtol=1e-5, atol=0)


def test_gather_uneven_concatenates_shares_of_different_sizes_in_rank_order(runs):
    assert runs.one[0]["uneven"].tolist() == [0, 1, 2]
    for rank in range(2):
        assert runs.two[rank]["uneven"].tolist() == [0, 1, 2, 10, 11, 12, 13]
    for rank in range(4):
        assert runs.four[rank]["uneven"].tolist() == [*range(3), *range(10, 14), *range(20, 25),
                                                      *range(30, 36)]


@pytest.mark.parametrize("workers", [2, 4])
def test_global_bn_over_uneven_shares_equals_bn_on_the_whole_batch(runs, workers):
    """2 workers holding 3 and 5 rows (4 holding 1, 2, 1 and 4): outputs, input gradients and running
    statistics as plain BN on all 8 rows in one process; the parameter gradients summed over workers
    (as DDP does) too."""
    one, many = runs.one, runs.two if workers == 2 else runs.four
    reference = _bn_reference(torch.nn.BatchNorm2d(3, momentum=None).double().train())  # one process
    for (lo, hi), result in zip(BN_SHARES[workers], (r["global_bn"] for r in many)):
        for key in ("y", "x_grad"):
            torch.testing.assert_close(result[key], reference[key][lo:hi], rtol=1e-10, atol=1e-12, msg=key)
        for key in ("running_mean", "running_var"):
            torch.testing.assert_close(result[key], reference[key], rtol=1e-10, atol=1e-12, msg=key)
    for key in ("weight_grad", "bias_grad"):
        summed = sum(r["global_bn"][key] for r in many)
        torch.testing.assert_close(summed, reference[key], rtol=1e-10, atol=1e-12, msg=key)
        torch.testing.assert_close(one[0]["global_bn"][key], reference[key], rtol=1e-10, atol=1e-12)
