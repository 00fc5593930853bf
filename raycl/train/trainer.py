"""The driver side of a run: the Ray cluster it needs and the ``TorchTrainer`` that runs it.

:func:`build_trainer` is the one place that turns a :class:`~raycl.config.Config` into Ray Train's
objects (data pipelines, scaling, run config, callbacks); ``raycl.run`` calls it and so will the
Tune trials of a sweep, with their own callbacks.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import ray
from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchConfig, TorchTrainer

from raycl.checks import ConfigError
from raycl.config import Config
from raycl.data.pipeline import Pipelines, build_pipelines, pinned
from raycl.data.sizing import pool_size
from raycl.runtime import on_driver_node
from raycl.train import accel
from raycl.train.best import KeepBest
from raycl.train.loop import train_loop
from raycl.train.recovery import Failures
from raycl.train.recovery import callbacks as recovery_callbacks

log = logging.getLogger(__name__)
IDLE_WORKERS = 8  # at least this many idle worker processes kept by a local Ray raycl starts
# Ray Train settings for a local Ray raycl starts: its one node is never drained by an autoscaler, so
# no preemption watcher (an actor per run), and the controller polls its workers every 0.5 s instead of
# 2 s, so a run's start and end are seen sooner (seconds per trial in a sweep of short runs)
LOCAL_TRAIN_ENV = {"RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0", "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.5"}


@dataclass
class Trainer:
    """A built run: Ray Train's trainer, the pipelines feeding it and where it writes."""

    trainer: TorchTrainer
    pipelines: Pipelines
    config: Config  # with its name and absolute storage path filled in
    path: str  # storage_path/name: Ray Train's run directory, and raycl's result files
    failures: object = None  # the run's Failures actor (raycl.train.recovery)

    def header(self) -> str:
        c, p = self.config, self.pipelines
        monitor = ""
        if c.eval.knn_every and not p.knn_sets:  # said once: the epoch lines then show no kNN
            monitor = ("; no kNN monitor: the images have no labels (eval.data_source names a labelled "
                       "source for it)")
        elif c.eval.knn_every and c.eval.data_source:
            where = f" at {c.eval.data_path}" if c.eval.data_path else ""
            monitor = f"; kNN monitor on {c.eval.data_source}{where}"
        return (f"[raycl] {c.method.name} on {c.train.workers} worker(s), preset "
                f"{c.preset or 'custom'}: {p.num_train} training images"
                f"{' (unlabelled)' if c.data.unlabelled else ''}, {c.train.epochs} epochs, "
                f"global batch {c.train.batch_size}{monitor}")


def with_run_name(cfg: Config) -> Config:
    """``cfg`` with a name (default ``method-preset-time``) and an absolute storage path."""
    name = cfg.name or f"{cfg.method.name}-{cfg.preset or 'custom'}-{time.strftime('%Y%m%d-%H%M%S')}"
    storage = cfg.storage_path
    if "://" not in storage:
        storage = str(Path(storage).expanduser().resolve())
    return cfg.override({"name": name, "storage_path": storage})


def build_trainer(cfg: Config, callbacks: Sequence = (), say=None) -> Trainer:
    """The ``TorchTrainer`` of the run ``cfg`` (named by :func:`with_run_name` if it is not).

    Ray must be running (:func:`ensure_ray`). ``callbacks`` go to the trainer's ``RunConfig``
    (e.g. Tune's ``TuneReportCallback``). A trainer whose name already holds a run continues it
    from its last checkpoint: that is Ray Train's rule for a ``RunConfig`` (name, storage path).
    A lost worker restarts the group up to ``train.max_failures`` times (:mod:`raycl.train.recovery`);
    ``say``: a queue that gets a console line per restart. Beside Ray Train's last
    ``train.num_to_keep`` checkpoints, the best by validation kNN is kept in ``<run>/best``."""
    cfg = with_run_name(cfg.validate())
    pipes = build_pipelines(cfg)
    failures = Failures.options(**on_driver_node()).remote()
    run_dir = os.path.join(cfg.storage_path, cfg.name)
    trainer = TorchTrainer(
        train_loop,
        train_loop_config={"config": cfg.to_dict(), "clock": pipes.clock,
                           "num_train": pipes.num_train, "num_classes": pipes.num_classes,
                           "knn_sets": pipes.knn_sets, "failures": failures},
        torch_config=TorchConfig(backend=accel.backend(cfg)),
        scaling_config=ScalingConfig(num_workers=cfg.train.workers, use_gpu=cfg.train.use_gpu,
                                     resources_per_worker={"CPU": cfg.train.cpus_per_worker,
                                                           **pinned(cfg.train.node_resource)}),
        run_config=RunConfig(name=cfg.name, storage_path=cfg.storage_path,
                             checkpoint_config=CheckpointConfig(num_to_keep=cfg.train.num_to_keep),
                             failure_config=FailureConfig(max_failures=cfg.train.max_failures),
                             callbacks=[*callbacks, KeepBest(run_dir),
                                        *recovery_callbacks(failures, cfg.train.max_failures, say)]),
        datasets=pipes.datasets,
    )
    return Trainer(trainer, pipes, cfg, run_dir, failures)


def augment_cpus(cfg: Config) -> float:
    """CPUs a run's augmentation reserves: its actor pool, or one task at a time."""
    a = cfg.augment
    return (pool_size(cfg) if a.compute == "actors" else 1) * a.cpus_per_actor


def run_cpus(cfg: Config) -> float:
    """CPUs a run reserves: its training workers and its augmentation."""
    return cfg.train.workers * cfg.train.cpus_per_worker + augment_cpus(cfg)


def ensure_ray(cfg: Config, verbose: bool = False, runs: int = 1) -> None:
    """Join the cluster named by ``RAY_ADDRESS``, else a live one started on this machine with
    ``ray start`` (its address file is ignored once no cluster answers there), else start a local Ray
    big enough for ``runs`` such runs side by side (a sweep's trials). :func:`check_cluster` then
    says whether the run fits the cluster it got.

    Ray's workers log to its files, not to this console, unless ``verbose`` (raycl forwards what a
    person wants to read: one line per epoch or per trial)."""
    if ray.is_initialized():
        return
    quiet = {} if verbose else {"logging_level": logging.WARNING}  # "Started a local Ray instance"
    if not verbose:
        _quiet_token_notice()
        _quiet_worker_pool_notice()
    if os.environ.get("RAY_ADDRESS"):
        ray.init(log_to_driver=verbose, **quiet)
        return
    started = _live_ray_start_address()
    if started is not None:  # a cluster of this machine started with `ray start`: run on it
        print(f"[raycl] joining the Ray cluster started with `ray start` at {started} "
              "(set RAY_ADDRESS to choose another)", flush=True)
        ray.init(address=started, log_to_driver=verbose, **quiet)
        return
    # plus one whole CPU for Ray Data's read and decode tasks (on a 2-core machine fractional
    # reservations otherwise deadlock)
    need = runs * run_cpus(cfg) + 1
    num_cpus = max(os.cpu_count() or 1, math.ceil(need))
    if num_cpus > (os.cpu_count() or 1):
        log.info("starting local Ray with %d logical CPUs on %d cores (the run reserves %.1f)",
                 num_cpus, os.cpu_count(), need)
    # idle task workers are kept (Ray keeps as many as it has CPUs) so that the augmentation tasks
    # of the next epoch or the next trial reuse a process instead of starting one, which costs
    # about 2 s of CPU (Python, Ray, torch) each
    idle = max(IDLE_WORKERS, 2 * num_cpus)
    for var, value in LOCAL_TRAIN_ENV.items():  # the raylet's processes inherit them; a user's value wins
        os.environ.setdefault(var, value)
    # address="local": a new instance, even where a stopped `ray start` left its address file behind
    ray.init(address="local", num_cpus=num_cpus, log_to_driver=verbose,
             _system_config={"num_workers_soft_limit": idle}, **quiet)


def _live_ray_start_address() -> str | None:
    """The address `ray start` recorded on this machine, if a cluster still answers there (the file
    outlives a stopped head; Ray's own ``ray.init()`` would then fail on it)."""
    import socket

    from ray._common.utils import get_ray_address_file  # where `ray start` writes its address

    path = get_ray_address_file(None)
    try:
        with open(path) as f:
            address = f.read().strip()
        host, _, port = address.rpartition(":")
        with socket.create_connection((host, int(port)), timeout=2):
            return address
    except (OSError, ValueError):
        if os.path.exists(path):
            log.info("ignoring %s: no Ray cluster answers at the address it holds", path)
        return None


def prepare_kernel(cfg: Config) -> None:
    """Build the fused augmentation kernel here before the workers start (they load it instead of
    each building it), printing the line :func:`raycl.data.fused.prebuild` has about it, if any."""
    from raycl.data import fused

    said = fused.prebuild(cfg.augment.backend, only_here=sum(n["Alive"] for n in ray.nodes()) == 1)
    if said:
        print(f"[raycl] {said}", flush=True)


def check_cluster(cfg: Config) -> None:
    """Fail at once, naming what to change, when the cluster cannot hold the run: GPUs asked for that
    it does not have, or fewer CPUs than the run's workers and augmentation reserve plus one for Ray
    Data (Ray Train would wait for them forever). A cluster joined through ``RAY_ADDRESS`` may
    autoscale: there the run says so and waits up to ``train.cluster_wait_s`` for the nodes."""
    short = _shortfall(cfg)
    if not short:
        return
    if not os.environ.get("RAY_ADDRESS"):
        raise short[0]
    wait = cfg.train.cluster_wait_s
    print(f"[raycl] waiting up to {wait:g} s for the cluster to grow ({short[0]})", flush=True)
    deadline = time.monotonic() + wait
    while short and time.monotonic() < deadline:
        time.sleep(min(5.0, max(0.05, deadline - time.monotonic())))
        short = _shortfall(cfg)
    if short:
        raise ConfigError("train.cluster_wait_s", wait, "long enough for the cluster to grow; after "
                          f"{wait:g} s it still lacks what the run needs ({short[0]})")


def _node_totals(resource: str) -> tuple[float, float]:
    """CPUs and GPUs of the live nodes that advertise ``resource``."""
    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive") and resource in n.get("Resources", {})]
    return sum(n.get("CPU", 0.0) for n in nodes), sum(n.get("GPU", 0.0) for n in nodes)


def _shortfall(cfg: Config) -> list[ConfigError]:
    """What the cluster lacks for the run, as errors naming the fields to change."""
    have = ray.cluster_resources()
    gpus, cpus = float(have.get("GPU", 0)), float(have.get("CPU", 0))
    short = []
    for key, resource, need in (("train.node_resource", cfg.train.node_resource,
                                 cfg.train.workers * cfg.train.cpus_per_worker),
                                ("augment.node_resource", cfg.augment.node_resource, augment_cpus(cfg) + 1)):
        if resource and _node_totals(resource)[0] + 1e-9 < need:
            short.append(ConfigError(key, resource, f"a resource of nodes with {need:g} CPUs for the run "
                                     f"(they have {_node_totals(resource)[0]:g}): add such nodes "
                                     f"(resources: {{{resource}: 1000}}) or unset {key}"))
    if cfg.train.use_gpu and gpus < cfg.train.workers:
        short.append(ConfigError(
            "train.use_gpu", True, f"a cluster with a GPU per worker: {cfg.train.workers} worker(s), and "
            f"this cluster has {gpus:g} GPU(s); set train.use_gpu=false or fewer train.workers"))
    need = run_cpus(cfg) + 1
    if cpus + 1e-9 < need:
        short.append(ConfigError(
            "train.workers", cfg.train.workers, f"a run that fits the cluster's {cpus:g} CPUs: its workers "
            f"and augmentation reserve {need - 1:g} CPUs, plus 1 for Ray Data; lower train.workers, "
            "train.cpus_per_worker or augment.actors"))
    return short


_POOL_NOTICE = "PYTHON worker processes have been started on node"


def _quiet_worker_pool_notice() -> None:
    """The raylet's "N PYTHON worker processes have been started ... Nx the maximum expected startup
    concurrency" goes to raycl's log instead of the console: raycl keeps idle workers on purpose (see
    ``ensure_ray``) and its augmentation tasks reserve fractions of a CPU, so the count is expected.
    Ray prints these raylet messages from the driver's error listener, which has no logger to filter,
    so its print function is wrapped; every other message still prints."""
    import ray._private.worker as ray_worker

    printer = getattr(ray_worker, "print_to_stdstream", None)
    if printer is None or getattr(printer, "_raycl_quiet", False):
        return

    def print_to_stdstream(data, ignore_prefix: bool):
        lines = []
        for line in data.get("lines", []):
            if _POOL_NOTICE in str(line):
                log.info("raylet: %s", line)
            else:
                lines.append(line)
        if lines:
            printer({**data, "lines": lines}, ignore_prefix)

    print_to_stdstream._raycl_quiet = True
    ray_worker.print_to_stdstream = print_to_stdstream


class _DropTokenNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "Token authentication is enabled" not in record.getMessage()


def _quiet_token_notice() -> None:
    """Ray's notice that a local cluster uses token authentication (its default, and raycl's) goes
    unprinted; every other warning of that logger stays."""
    logger = logging.getLogger("ray._private.authentication.authentication_token_setup")
    if not any(isinstance(f, _DropTokenNotice) for f in logger.filters):
        logger.addFilter(_DropTokenNotice())
