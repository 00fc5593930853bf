"""Ray Data pipelines: decoded, augmented views streamed to the trainers.

The labelled training table is split (class-stratified, seeded) into a training part and a validation
part. Up to three Ray datasets come out:

- ``train``: blocks of encoded images → :class:`AugmentActor` (an actor pool on CPU nodes, sized apart
  from the training workers) decodes them and draws the views; nothing is materialised per epoch.
  Ray Data rebuilds the actor pool every epoch, a fixed cost that dominates short epochs, so
  ``augment.compute="tasks"`` runs the same augmenter (:mod:`raycl.data.augmenter`) as stateless
  tasks in reused workers instead (the ``tiny`` preset).
- ``knn_bank`` / ``knn_val``: decoded, centre-cropped images of the training and validation parts for
  the kNN monitor. Up to :data:`IN_MEMORY_EVAL_BYTES` decoded, a set is decoded once by the driver
  into the object store (an :class:`EvalSet`: each monitor then reads it without starting a Ray Data
  execution, which costs seconds of task and actor start-up against a fraction of a second of
  forward passes); above that it stays a Ray dataset, decoded by stateless tasks at every monitor.

Each epoch is a new execution, so views are fresh. The epoch reaches the actors through a small
:class:`EpochClock` actor that rank 0 advances before each epoch; every batch's generator is seeded from
``(seed, epoch, first row id)``, so views are reproducible for a fixed seed whatever actor runs them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import ray
import torch

from raycl.config import Config
from raycl.data.clock import EpochClock
from raycl.data.sources import load_table, stratified_split
from raycl.data.workers import AugmentActor, augment_task, decode_for_eval
from raycl.seeding import derive_seed, numpy_rng

log = logging.getLogger(__name__)


@dataclass
class SplitTables:
    """The labelled data after the train/validation split (in-memory Arrow tables with an ``id``)."""

    train: pa.Table
    val: pa.Table
    test: pa.Table | None
    num_classes: int


def load_split_tables(cfg: Config, with_test: bool = False) -> SplitTables:
    """Load the source's training table and split it into train / validation (never the test split)."""
    d = cfg.data
    table = load_table(d.source, "train", path=d.path, image_size=d.image_size,
                       num_images=d.num_images, seed=cfg.train.seed, download=d.download)
    labels = table.column("label").to_numpy()
    train_idx, val_idx = stratified_split(labels, d.val_fraction, cfg.train.seed)
    test = None
    if with_test:
        test = _with_ids(load_table(d.source, "test", path=d.path, image_size=d.image_size,
                                    num_images=d.num_test_images, seed=cfg.train.seed,
                                    download=d.download))
    num_classes = int(labels.max()) + 1
    return SplitTables(_with_ids(table.take(train_idx)), _with_ids(table.take(val_idx)), test,
                       num_classes)


def _with_ids(table: pa.Table) -> pa.Table:
    return table.append_column("id", pa.array(np.arange(table.num_rows, dtype=np.int64)))


def _blocks(table: pa.Table, rows_per_block: int) -> list[pa.Table]:
    return [table.slice(i, rows_per_block) for i in range(0, table.num_rows, rows_per_block)]


def train_dataset(table: pa.Table, cfg: Config, clock) -> ray.data.Dataset:
    """Augmented training stream (``view0``, ``view1`` and, with ``augment.small_crops = V``, the
    small views ``view2`` .. ``view{V+1}``), shuffled at block level each epoch.

    With ``augment.node_resource`` set (e.g. ``"augment_node"``), the augmentation ``map_batches``
    also asks for ``resources={node_resource: 0.001}``: on a multi-node cluster whose CPU-only nodes
    advertise that custom resource (``resources: {CPU: 16, augment_node: 1000}`` in the node type of
    ``cluster.yaml``), the decode + augment work is scheduled only on those nodes, never on the GPU
    training nodes. The resource must exist somewhere in the cluster or the stream never starts.
    """
    a = cfg.augment
    ds = ray.data.from_arrow(_blocks(table, a.batch_size))
    ds = ds.randomize_block_order(
        seed=ray.data.RandomSeedConfig(seed=derive_seed(cfg.train.seed, "block_shuffle"),
                                       reseed_after_execution=True))
    kwargs = dict(recipe=a.recipe, image_size=cfg.data.image_size, crop_size=a.crop_size,
                  color_strength=a.color_strength, blur=a.blur, seed=cfg.train.seed, clock=clock,
                  threads=max(1, int(a.cpus_per_actor)),
                  scale=None if a.crop_scale is None else tuple(map(float, a.crop_scale)),
                  small_crops=int(a.small_crops), small_crop_size=int(a.small_crop_size),
                  small_crop_scale=tuple(float(v) for v in a.small_crop_scale),
                  remove=tuple(a.remove), backend=a.backend)
    common = dict(batch_size=a.batch_size, batch_format="numpy", num_cpus=a.cpus_per_actor)
    if a.node_resource:
        common["resources"] = {a.node_resource: 0.001}
    if a.compute == "tasks":
        return ds.map_batches(augment_task, fn_kwargs=kwargs, **common)
    return ds.map_batches(AugmentActor, fn_constructor_kwargs=kwargs,
                          compute=ray.data.ActorPoolStrategy(size=a.actors), **common)


def eval_dataset(table: pa.Table, cfg: Config) -> ray.data.Dataset:
    """Decoded, un-augmented images for feature extraction."""
    ds = ray.data.from_arrow(_blocks(table, cfg.augment.batch_size))
    return ds.map_batches(
        decode_for_eval,
        fn_kwargs=dict(image_size=cfg.data.image_size, crop_size=cfg.augment.crop_size),
        batch_format="numpy",
        batch_size=cfg.augment.batch_size,
        num_cpus=min(1.0, cfg.augment.cpus_per_actor),
    )


def knn_bank_table(train: pa.Table, cfg: Config) -> pa.Table:
    """The training images of the kNN bank: all of them, or a seeded subset of ``eval.knn_bank_size``."""
    n = cfg.eval.knn_bank_size
    if n is None or n >= train.num_rows:
        return train
    keep = np.sort(numpy_rng(cfg.train.seed, "knn_bank").choice(train.num_rows, n, replace=False))
    return train.take(keep)


IN_MEMORY_EVAL_BYTES = 1 << 30


@dataclass
class EvalSet:
    """A kNN set decoded once: uint8 ``[N, 3, S, S]`` images and int64 labels in the object store."""

    images: ray.ObjectRef
    labels: ray.ObjectRef
    size: int

    def batches(self, rank: int, world: int, batch_size: int):
        """This rank's contiguous share of the set (shares differ by at most one image), in batches
        of ``{"image", "label"}`` tensors."""
        images, labels = ray.get([self.images, self.labels])  # zero-copy views of the object store
        start, stop = rank * self.size // world, (rank + 1) * self.size // world
        for i in range(start, stop, batch_size):
            j = min(i + batch_size, stop)
            yield {"image": torch.from_numpy(images[i:j].copy()),
                   "label": torch.from_numpy(labels[i:j].copy())}


def in_memory_eval_set(table: pa.Table, cfg: Config) -> EvalSet | None:
    """``table`` decoded by this process into an :class:`EvalSet`, or None when its decoded images
    would exceed :data:`IN_MEMORY_EVAL_BYTES` (it is then streamed as :func:`eval_dataset`)."""
    crop = cfg.augment.crop_size
    if table.num_rows * 3 * crop * crop > IN_MEMORY_EVAL_BYTES:
        return None
    batch = decode_for_eval({"image": table.column("image"), "label": table.column("label").to_numpy()},
                            cfg.data.image_size, crop)
    return EvalSet(ray.put(batch["image"]), ray.put(batch["label"].astype(np.int64)), table.num_rows)


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


def build_pipelines(cfg: Config) -> Pipelines:
    """Load, split and wrap the data as the Ray datasets (and kNN sets) a training run reads; the
    trainer takes this process's DataContext with them (:func:`quiet_data_context`)."""
    quiet_data_context()
    tables = load_split_tables(cfg)
    if tables.train.num_rows < cfg.train.batch_size:
        raise ValueError(f"train.batch_size = {cfg.train.batch_size} is larger than the "
                         f"{tables.train.num_rows} training images after the validation split")
    clock = EpochClock.remote()
    datasets = {"train": train_dataset(tables.train, cfg, clock)}
    knn_sets: dict[str, EvalSet | None] = {}
    if cfg.eval.knn_every:
        for name, table in (("knn_bank", knn_bank_table(tables.train, cfg)), ("knn_val", tables.val)):
            knn_sets[name] = in_memory_eval_set(table, cfg)
            if knn_sets[name] is None:
                datasets[name] = eval_dataset(table, cfg)
    log.info("data: %d training / %d validation images, %d classes", tables.train.num_rows,
             tables.val.num_rows, tables.num_classes)
    return Pipelines(datasets, tables.train.num_rows, tables.num_classes, clock, knn_sets)
