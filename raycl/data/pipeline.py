"""Ray Data pipelines: decoded, augmented views streamed to the trainers.

The driver lists the source (:mod:`raycl.data.sources`: keys, labels and where each image is, not
the images) and splits the training listing into a training and a validation part (class-stratified,
by a seeded hash of each key). Up to three Ray datasets come out:

- ``train``: windows of the listing, dealt anew every epoch (:mod:`raycl.data.reading`), each read,
  decoded and augmented by one call of :class:`AugmentActor` (an actor pool on CPU nodes, sized
  apart from the training workers); nothing is materialised per epoch. Ray Data rebuilds the actor
  pool every epoch, a fixed cost that dominates short epochs, so ``augment.compute="tasks"`` runs
  the same augmenter (:mod:`raycl.data.augmenter`) as stateless tasks in reused workers instead
  (the ``tiny`` preset).
- ``knn_bank`` / ``knn_val``: decoded, centre-cropped images of the training and validation parts for
  the kNN monitor. Up to :data:`IN_MEMORY_EVAL_BYTES` decoded, a set is decoded once by a Ray task
  into the object store (an :class:`EvalSet`: each monitor then reads it without starting a Ray Data
  execution, which costs seconds of task and actor start-up against a fraction of a second of
  forward passes); above that it stays a Ray dataset, read and decoded by tasks at every monitor.

Each epoch is a new execution, so views are fresh. The epoch reaches the readers and augmenters
through a small :class:`EpochClock` actor that rank 0 advances before each epoch (it also collects
the images that could not be decoded); every batch's generator is seeded from
``(seed, epoch, first row id)``, so views are reproducible for a fixed seed whatever actor runs them.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import ray
import ray.util.debug
import torch
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from raycl.config import Config
from raycl.data.clock import EpochClock
from raycl.data.listing import Listing, hashed_split
from raycl.data.reading import ReadPlan
from raycl.data.sizing import pool_size
from raycl.data.sources import list_images
from raycl.data.workers import AugmentActor, augment_task, decode_listing, decode_windows
from raycl.runtime import on_driver_node
from raycl.seeding import derive_seed, numpy_rng

log = logging.getLogger(__name__)
MIN_WINDOWS = 8  # Parquet windows per epoch at least (chunks allowing), so that several actors work


@dataclass
class SplitListings:
    """The labelled data after the train/validation split, as listings (no image bytes)."""

    train: Listing
    val: Listing
    test: Listing | None
    num_classes: int


class NoLabelsError(ValueError):
    """The run has no labelled images: ``data.unlabelled`` and no ``eval.data_source``."""


def has_labels(cfg: Config) -> bool:
    """Whether the run has labelled images (for the kNN monitor and the protocols)."""
    return bool(cfg.eval.data_source) or not cfg.data.unlabelled


def load_split_listings(cfg: Config, with_test: bool = False) -> SplitListings:
    """List the labelled source's training split and split it into train / validation (never the
    test split). The labelled source is ``eval.data_source`` when set, else the run's own data."""
    d, e = cfg.data, cfg.eval
    if not has_labels(cfg):
        raise NoLabelsError("no labelled images: data.unlabelled = true and no eval.data_source; set "
                            "eval.data_source and eval.data_path to a labelled source (e.g. parquet and "
                            "a folder with train.parquet and test.parquet)")
    source, path, num_images = ((e.data_source, e.data_path, e.data_num_images) if e.data_source
                                else (d.source, d.path, d.num_images))
    kwargs = dict(path=path, image_size=d.image_size, seed=cfg.train.seed, download=d.download)
    listing = list_images(source, "train", num_images=num_images, **kwargs)
    labels = listing.labels
    train_idx, val_idx = hashed_split(listing.rows.column("key"), labels, d.val_fraction, cfg.train.seed)
    test = list_images(source, "test", num_images=d.num_test_images, **kwargs) if with_test else None
    num_classes = max(len(listing.class_names), int(labels.max()) + 1 if len(labels) else 0)
    return SplitListings(listing.take(train_idx), listing.take(val_idx), test, num_classes)


def pretraining_listing(cfg: Config, labelled: SplitListings | None) -> Listing:
    """The images the run pre-trains on: the labelled training part (validation images held out)
    when the run's own data is its labelled source, else all of ``data.*`` (labels unread when
    ``data.unlabelled``)."""
    if labelled is not None and not cfg.eval.data_source:
        return labelled.train
    d = cfg.data
    return list_images(d.source, "train", path=d.path, image_size=d.image_size, num_images=d.num_images,
                       seed=cfg.train.seed, download=d.download, labelled=not d.unlabelled)


def pinned(resource: str | None) -> dict[str, float]:
    """A sliver of a custom node resource (``augment.node_resource``, ``train.node_resource``): it
    confines a task or actor to the nodes that advertise it, while CPUs stay the real limit."""
    return {resource: 0.001} if resource else {}


def read_plan(listing: Listing, cfg: Config, shuffle: bool) -> ReadPlan:
    """How Ray Data reads ``listing``: windows of one augmentation batch of single-image chunks
    (files, in-memory rows), or of whole Parquet row groups spanning ``data.shuffle_rows`` rows (but
    no fewer than :data:`MIN_WINDOWS` windows); reshuffled every epoch when ``shuffle``."""
    chunks = max(1, listing.num_chunks)
    rows_per_chunk = listing.num_rows / chunks
    per_window = (cfg.augment.batch_size if rows_per_chunk <= 1
                  else max(1, min(math.ceil(cfg.data.shuffle_rows / rows_per_chunk),
                                  math.ceil(chunks / MIN_WINDOWS))))
    return ReadPlan(ray.put(listing.rows), listing.reader.shared(), chunks, per_window,
                    derive_seed(cfg.train.seed, "shuffle") if shuffle else None, cfg.augment.batch_size)


def _windows(plan: ReadPlan) -> ray.data.Dataset:
    """The window numbers of ``plan``, one block each (so one task or actor call per window); lazy, so
    the driver waits on no Ray task before the trainer starts."""
    return ray.data.range(plan.num_windows, override_num_blocks=plan.num_windows)


def train_dataset(listing: Listing, cfg: Config, clock) -> ray.data.Dataset:
    """Augmented training stream (``view0``, ``view1`` and, with ``augment.small_crops = V``, the
    small views ``view2`` .. ``view{V+1}``), its rows reshuffled every epoch.

    With ``augment.node_resource`` set (e.g. ``"augment_node"``), the augmentation ``map_batches``
    also asks for ``resources={node_resource: 0.001}``: on a multi-node cluster whose CPU-only nodes
    advertise that custom resource (``resources: {CPU: 16, augment_node: 1000}`` in the node type of
    ``cluster.yaml``), the read + decode + augment work is scheduled only on those nodes, never on
    the GPU training nodes. The resource must exist somewhere in the cluster or the stream never
    starts.
    """
    a = cfg.augment
    plan = read_plan(listing, cfg, shuffle=True)
    kwargs = dict(plan=plan, recipe=a.recipe, image_size=cfg.data.image_size, crop_size=a.crop_size,
                  color_strength=a.color_strength, blur=a.blur, seed=cfg.train.seed, clock=clock,
                  threads=max(1, int(a.cpus_per_actor)), on_bad=cfg.data.on_bad_image,
                  scale=None if a.crop_scale is None else tuple(map(float, a.crop_scale)),
                  small_crops=int(a.small_crops), small_crop_size=int(a.small_crop_size),
                  small_crop_scale=tuple(float(v) for v in a.small_crop_scale),
                  remove=tuple(a.remove), backend=a.backend, plugins=tuple(cfg.plugins))
    common = dict(batch_size=1, batch_format="numpy", num_cpus=a.cpus_per_actor,  # one window a call
                  resources=pinned(a.node_resource))
    if a.compute == "tasks":
        return _windows(plan).map_batches(augment_task, fn_kwargs=kwargs, **common)
    return _windows(plan).map_batches(AugmentActor, fn_constructor_kwargs=kwargs,
                                      compute=ray.data.ActorPoolStrategy(size=pool_size(cfg)), **common)


def eval_dataset(listing: Listing, cfg: Config, clock=None) -> ray.data.Dataset:
    """Decoded, un-augmented images for feature extraction, read in listing order."""
    plan = read_plan(listing, cfg, shuffle=False)
    return _windows(plan).map_batches(
        decode_windows,
        fn_kwargs=dict(plan=plan, image_size=cfg.data.image_size, crop_size=cfg.augment.crop_size,
                       on_bad=cfg.data.on_bad_image, clock=clock),
        batch_format="numpy",
        batch_size=1,
        num_cpus=min(1.0, cfg.augment.cpus_per_actor),
        resources=pinned(cfg.augment.node_resource),
    )


def knn_bank_rows(n: int, cfg: Config) -> np.ndarray:
    """Rows of the ``n`` training images in the kNN bank: all, or a seeded ``eval.knn_bank_size``."""
    size = cfg.eval.knn_bank_size
    if size is None or size >= n:
        return np.arange(n)
    return np.sort(numpy_rng(cfg.train.seed, "knn_bank").choice(n, size, replace=False))


IN_MEMORY_EVAL_BYTES = 1 << 30


@dataclass
class EvalSet:
    """A kNN set decoded once: uint8 ``[N, 3, S, S]`` images and int64 labels in the object store."""

    images: ray.ObjectRef
    labels: ray.ObjectRef

    @property
    def size(self) -> int:
        return len(ray.get(self.labels))

    def batches(self, rank: int, world: int, batch_size: int):
        """This rank's contiguous share of the set (shares differ by at most one image), in batches
        of ``{"image", "label"}`` tensors."""
        images, labels = ray.get([self.images, self.labels])  # zero-copy views of the object store
        size = len(labels)
        start, stop = rank * size // world, (rank + 1) * size // world
        for i in range(start, stop, batch_size):
            j = min(i + batch_size, stop)
            yield {"image": torch.from_numpy(images[i:j].copy()),
                   "label": torch.from_numpy(labels[i:j].copy())}


def in_memory_eval_set(listing: Listing, cfg: Config, clock=None) -> EvalSet | None:
    """``listing`` read and decoded once by a Ray task into an :class:`EvalSet` (the driver only
    holds references), or None when its decoded images would exceed :data:`IN_MEMORY_EVAL_BYTES`
    (it is then streamed as :func:`eval_dataset`)."""
    crop = cfg.augment.crop_size
    if listing.num_rows * 3 * crop * crop > IN_MEMORY_EVAL_BYTES:
        return None
    # outside any placement group: a sweep's trial reserves its CPUs for its trainer, as Ray Data's
    # own tasks are also scheduled outside it
    decode = ray.remote(decode_listing).options(
        num_returns=2, num_cpus=1, resources=pinned(cfg.augment.node_resource),
        scheduling_strategy=PlacementGroupSchedulingStrategy(placement_group=None))
    images, labels = decode.remote(listing, cfg.data.image_size, crop, cfg.data.on_bad_image, clock)
    return EvalSet(images, labels)


@dataclass
class Pipelines:
    datasets: dict[str, ray.data.Dataset]
    num_train: int
    num_classes: int
    clock: object
    # the kNN monitor's sets: an EvalSet, or None for the Ray dataset of that name
    knn_sets: dict[str, EvalSet | None] = field(default_factory=dict)


def quiet_data_context() -> None:
    """No progress bars or execution banners from Ray Data: its executors run in Ray Train's
    coordinator actors, where nobody sees them, and drawing them cost CPU every epoch."""
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.enable_operator_progress_bars = False
    ctx.print_on_execution_start = False
    # Ray Data warns once per process that its bars are off; that once is now (a raycl choice)
    ray.util.debug.log_once("ray_data_progress_manager_disabled")


@contextlib.contextmanager
def quiet_data_logs() -> Iterator[None]:
    """Ray Data's per-execution INFO lines ("Dataset ... execution finished") kept off the console
    while a Ray dataset is executed in this process (raycl prints its own line per step)."""
    logger = logging.getLogger("ray.data")
    level = logger.level
    logger.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        logger.setLevel(level)


def build_pipelines(cfg: Config) -> Pipelines:
    """List, split and wrap the data as the Ray datasets (and kNN sets) a training run reads; the
    trainer takes this process's DataContext with them (:func:`quiet_data_context`)."""
    quiet_data_context()
    labelled = load_split_listings(cfg) if has_labels(cfg) else None
    train = pretraining_listing(cfg, labelled)
    if train.num_rows < cfg.train.batch_size:
        raise ValueError(f"train.batch_size = {cfg.train.batch_size} is larger than the "
                         f"{train.num_rows} training images" + ("" if cfg.eval.data_source or labelled is None
                                                                else " after the validation split"))
    clock = EpochClock.options(**on_driver_node()).remote()
    datasets = {"train": train_dataset(train, cfg, clock)}
    knn_sets: dict[str, EvalSet | None] = {}
    if cfg.eval.knn_every and labelled is not None:
        bank = labelled.train.take(knn_bank_rows(labelled.train.num_rows, cfg))
        for name, listing in (("knn_bank", bank), ("knn_val", labelled.val)):
            knn_sets[name] = in_memory_eval_set(listing, cfg, clock)
            if knn_sets[name] is None:
                datasets[name] = eval_dataset(listing, cfg, clock)
    log.info("data: %d training images; kNN monitor: %s", train.num_rows,
             f"{labelled.train.num_rows} bank / {labelled.val.num_rows} validation images, "
             f"{labelled.num_classes} classes" if labelled is not None else "none (no labels)")
    return Pipelines(datasets, train.num_rows, labelled.num_classes if labelled else 0, clock, knn_sets)
