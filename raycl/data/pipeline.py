"""Ray Data pipelines: decoded, augmented views streamed to the trainers.

The labelled training table is split (class-stratified, seeded) into a training part and a validation
part. Three Ray datasets come out:

- ``train``: blocks of encoded images → :class:`AugmentActor` (an actor pool on CPU nodes, sized apart
  from the training workers) decodes them and draws the views; nothing is materialised per epoch.
  Ray Data rebuilds the actor pool every epoch, a fixed cost that dominates short epochs, so
  ``augment.compute="tasks"`` runs the same :class:`Augmenter` as stateless tasks in reused workers
  instead (the ``tiny`` preset).
- ``knn_bank`` / ``knn_val``: decoded, centre-cropped images of the training and validation parts for
  the kNN monitor (stateless decode tasks).

Each epoch is a new execution, so views are fresh. The epoch reaches the actors through a small
:class:`EpochClock` actor that rank 0 advances before each epoch; every batch's generator is seeded from
``(seed, epoch, first row id)``, so views are reproducible for a fixed seed whatever actor runs them.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import ray
import torch

from raycl.config import Config
from raycl.data.augment import make_views
from raycl.data.sources import decode_images, load_table, stratified_split
from raycl.runtime import keep_freed_memory
from raycl.seeding import derive_seed, numpy_rng

log = logging.getLogger(__name__)


@ray.remote(num_cpus=0)
class EpochClock:
    """Holds the current epoch so that augmentation actors can seed per epoch."""

    def __init__(self) -> None:
        self.epoch = 0

    def set(self, epoch: int) -> None:
        self.epoch = epoch

    def get(self) -> int:
        return self.epoch


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


def batch_seed(seed: int, epoch: int, first_id: int) -> int:
    """The seed of one batch's views in one epoch, independent of which actor processes it."""
    return derive_seed(seed, "views", epoch, first_id)


class Augmenter:
    """Decode a batch of encoded images and draw its views (``view0``, ``view1``, …) as uint8 NCHW.

    The generator of each batch is seeded from ``(seed, epoch, first row id)``: reproducible for a
    fixed seed whatever actor or task runs the batch, and different every epoch.
    """

    def __init__(self, recipe: str, image_size: int, crop_size: int, color_strength: float,
                 blur: bool, seed: int, scale: tuple | None = None, small_crops: int = 0,
                 small_crop_size: int | None = None, small_crop_scale: tuple = (0.05, 0.14),
                 backend: str = "auto"):
        keep_freed_memory()  # batch-sized temporaries reuse heap blocks instead of fresh mmaps
        # multi-crop: view0, view1 at crop_size, then view2 .. view{1+small_crops} at small_crop_size
        self.views = make_views(recipe, size=crop_size, color_strength=color_strength, blur=blur,
                                scale=scale, small_crops=small_crops, small_size=small_crop_size,
                                small_scale=small_crop_scale, backend=backend)
        self.image_size = image_size
        self.seed = seed

    def __call__(self, batch: dict[str, np.ndarray], epoch: int) -> dict[str, np.ndarray]:
        generator = torch.Generator().manual_seed(batch_seed(self.seed, epoch, int(batch["id"][0])))
        images = torch.from_numpy(decode_images(batch["image"], self.image_size))
        out = {f"view{i}": view(images, generator).numpy() for i, view in enumerate(self.views)}
        out["label"] = batch["label"]
        out["id"] = batch["id"]
        return out


def _epoch(clock) -> int:
    return ray.get(clock.get.remote()) if clock is not None else 0


class AugmentActor:
    """``map_batches`` actor: one :class:`Augmenter` per actor, the epoch read from the clock."""

    def __init__(self, clock, threads: int = 1, **augmenter_kwargs):
        torch.set_num_threads(max(1, threads))
        self.augment = Augmenter(**augmenter_kwargs)
        self.clock = clock

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.augment(batch, _epoch(self.clock))


@functools.lru_cache(maxsize=4)
def _cached_augmenter(**kwargs) -> Augmenter:
    return Augmenter(**kwargs)


def augment_task(batch: dict[str, np.ndarray], clock, threads: int = 1, **augmenter_kwargs
                 ) -> dict[str, np.ndarray]:
    """``map_batches`` task version of :class:`AugmentActor` (worker processes are reused, and the
    augmenter is cached in them, so there is no per-epoch actor start-up)."""
    torch.set_num_threads(max(1, threads))
    return _cached_augmenter(**augmenter_kwargs)(batch, _epoch(clock))


def decode_for_eval(batch: dict[str, np.ndarray], image_size: int, crop_size: int
                    ) -> dict[str, np.ndarray]:
    """Decode and centre-crop (no augmentation): uint8 NCHW ``image`` and ``label``."""
    images = decode_images(batch["image"], image_size)
    if image_size < crop_size:
        images = decode_images(images, crop_size)
    top = (images.shape[1] - crop_size) // 2
    left = (images.shape[2] - crop_size) // 2
    images = images[:, top:top + crop_size, left:left + crop_size]
    return {"image": np.ascontiguousarray(images.transpose(0, 3, 1, 2)), "label": batch["label"]}


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
                  small_crop_scale=tuple(float(v) for v in a.small_crop_scale), backend=a.backend)
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


@dataclass
class Pipelines:
    datasets: dict[str, ray.data.Dataset]
    num_train: int
    num_classes: int
    clock: object


def build_pipelines(cfg: Config) -> Pipelines:
    """Load, split and wrap the data as the three Ray datasets a training run streams."""
    tables = load_split_tables(cfg)
    if tables.train.num_rows < cfg.train.batch_size:
        raise ValueError(f"train.batch_size = {cfg.train.batch_size} is larger than the "
                         f"{tables.train.num_rows} training images after the validation split")
    clock = EpochClock.remote()
    datasets = {"train": train_dataset(tables.train, cfg, clock)}
    if cfg.eval.knn_every:
        datasets["knn_bank"] = eval_dataset(knn_bank_table(tables.train, cfg), cfg)
        datasets["knn_val"] = eval_dataset(tables.val, cfg)
    log.info("data: %d training / %d validation images, %d classes", tables.train.num_rows,
             tables.val.num_rows, tables.num_classes)
    return Pipelines(datasets, tables.train.num_rows, tables.num_classes, clock)
