"""Validation of a whole configuration: every field, the method's options and the rules across them.

Each check raises a :class:`~raycl.checks.ConfigError` naming the field, the value and what is
allowed; the first bad value stops validation.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from raycl.checks import (ConfigError, int_at_least, int_between, nearest, number_in, one_of, positive,
                          scale_range)
from raycl.config.sections import (AUGMENT_BACKENDS, BACKBONES, COMPUTES, LR_SCALINGS, ON_BAD_IMAGE,
                                   OPTIMIZERS, PAIR_OPS, PRECISIONS, RECIPES, REMOVABLE_OPS, SCHEDULES,
                                   SOURCES, TRACKERS, TRANSFORM_TASKS)
from raycl import plugins
from raycl.methods import check_method_name, method_names, method_spec

if TYPE_CHECKING:
    from raycl.config.core import Config


def validate(cfg: "Config") -> None:
    check_method_name(cfg.method.name)
    plugins.check_shipped("method.name", cfg.method.name, cfg.plugins)
    method_spec(cfg.method.name).check(cfg)
    _data(cfg)
    _augment(cfg)
    _model(cfg)
    _optim(cfg)
    _train(cfg)
    _eval(cfg)
    if not cfg.storage_path:
        raise ConfigError("storage_path", cfg.storage_path, "a non-empty path or URI")


def _source(source_key: str, source: str, path_key: str, path) -> None:
    """A source name and its path (``data.*`` or the labelled ``eval.data_*``)."""
    one_of(source_key, source, SOURCES)
    if source in ("parquet", "folder") and not path:
        raise ConfigError(path_key, path, f"a path is required for {source_key}={source!r}")
    if source == "embedded" and path is not None:  # it would be ignored without a word
        raise ConfigError(path_key, path, f"no path with {source_key}='embedded' (it reads none); set "
                          f"{source_key} to 'parquet' or 'folder' to read this path")


def _data(cfg: "Config") -> None:
    d = cfg.data
    _source("data.source", d.source, "data.path", d.path)
    if not isinstance(d.unlabelled, bool):
        raise ConfigError("data.unlabelled", d.unlabelled, "true or false")
    int_at_least("data.image_size", d.image_size, 8)
    if d.num_images is not None:
        int_at_least("data.num_images", d.num_images, 2)
    if d.num_test_images is not None:
        int_at_least("data.num_test_images", d.num_test_images, 1)
    if not (0.0 < d.val_fraction < 1.0):
        raise ConfigError("data.val_fraction", d.val_fraction, "a fraction in (0, 1)")
    one_of("data.on_bad_image", d.on_bad_image, ON_BAD_IMAGE)
    int_at_least("data.shuffle_rows", d.shuffle_rows, 1)


def _augment(cfg: "Config") -> None:
    a, traits = cfg.augment, method_spec(cfg.method.name).traits
    one_of("augment.recipe", a.recipe, plugins.recipe_names(RECIPES), prefixes=("pair:",))
    if a.recipe.startswith("pair:"):
        for op in pair_ops(a.recipe):
            plugins.check_shipped("augment.recipe", op, cfg.plugins, kind="op")
    plugins.check_shipped("augment.recipe", a.recipe, cfg.plugins)
    int_at_least("augment.crop_size", a.crop_size, 8)
    if a.crop_scale is not None:
        scale_range("augment.crop_scale", a.crop_scale)
    int_at_least("augment.small_crops", a.small_crops, 0)
    if a.small_crops:
        if not traits.multi_crop:
            multi = [m for m in method_names() if method_spec(m).traits.multi_crop]
            raise ConfigError("augment.small_crops", a.small_crops,
                              f"0 for method {cfg.method.name!r} (multi-crop is used by {', '.join(multi)})")
        int_at_least("augment.small_crop_size", a.small_crop_size, 4)
        if a.small_crop_size >= a.crop_size:
            raise ConfigError("augment.small_crop_size", a.small_crop_size,
                              f"smaller than the large crops, augment.crop_size = {a.crop_size}")
        scale_range("augment.small_crop_scale", a.small_crop_scale)
    number_in("augment.color_strength", a.color_strength, 0.0, 2.0)
    if not isinstance(a.remove, tuple):
        raise ConfigError("augment.remove", a.remove, f"a tuple of ops from: {', '.join(REMOVABLE_OPS)}")
    for op in a.remove:
        one_of("augment.remove", op, REMOVABLE_OPS)
    one_of("augment.compute", a.compute, COMPUTES)
    one_of("augment.backend", a.backend, AUGMENT_BACKENDS)
    if a.actors != "auto" and (not isinstance(a.actors, int) or isinstance(a.actors, bool) or a.actors < 1):
        raise ConfigError("augment.actors", a.actors, "an integer >= 1, or 'auto' (sized to feed the "
                          "training workers: raycl.data.sizing)")
    positive("augment.cpus_per_actor", a.cpus_per_actor)
    for key in ("images_per_s_per_worker", "images_per_s_per_core"):
        if getattr(a, key) is not None:
            positive(f"augment.{key}", getattr(a, key))
    int_at_least("augment.batch_size", a.batch_size, 1)


def pair_ops(recipe: str, name: str = "augment.recipe") -> list[str]:
    """The two ops ``pair:a,b`` names, each of :data:`PAIR_OPS` or a plugin's; a
    :class:`ConfigError` naming ``name`` otherwise (checked on the driver, not first in a Ray Data
    task)."""
    ops, allowed = [op.strip() for op in recipe[len("pair:"):].split(",")], plugins.op_names(PAIR_OPS)
    if len(ops) != 2:
        raise ConfigError(name, recipe, f"'pair:a,b' with two ops a, b from: {', '.join(allowed)}")
    for op in ops:
        if op not in allowed:
            raise ConfigError(name, recipe, f"'pair:a,b' with a, b from: {', '.join(allowed)}; {op!r} is "
                              f"not one of them{nearest(op, allowed)}")
    return ops


def _model(cfg: "Config") -> None:
    mo = cfg.model
    one_of("model.backbone", mo.backbone, BACKBONES)
    int_between("model.proj_depth", mo.proj_depth, 0, 4)
    int_at_least("model.proj_hidden_dim", mo.proj_hidden_dim, 1)
    int_at_least("model.proj_out_dim", mo.proj_out_dim, 1)
    int_between("model.pred_depth", mo.pred_depth, 1, 4)
    int_at_least("model.pred_hidden_dim", mo.pred_hidden_dim, 1)
    int_at_least("model.finetune_from", mo.finetune_from, 0)
    if mo.finetune_from > mo.proj_depth:
        raise ConfigError("model.finetune_from", mo.finetune_from,
                          f"at most model.proj_depth = {mo.proj_depth}")
    if mo.proj_depth == 0 and method_spec(cfg.method.name).traits.needs_head:
        raise ConfigError("model.proj_depth", 0, f"at least 1 for method {cfg.method.name!r}")
    if mo.init_from is not None and (not isinstance(mo.init_from, str) or not mo.init_from.strip()):
        raise ConfigError("model.init_from", mo.init_from, "a path (a raycl.export file, a torchvision "
                          "ResNet state dict or a raycl checkpoint) or None")


def _optim(cfg: "Config") -> None:
    o = cfg.optim
    one_of("optim.optimizer", o.optimizer, OPTIMIZERS)
    positive("optim.lr", o.lr)
    one_of("optim.lr_scaling", o.lr_scaling, LR_SCALINGS)
    if o.weight_decay < 0:
        raise ConfigError("optim.weight_decay", o.weight_decay, "a number >= 0")
    number_in("optim.momentum", o.momentum, 0.0, 1.0, high_open=True)
    if o.warmup_epochs < 0:
        raise ConfigError("optim.warmup_epochs", o.warmup_epochs, "a number >= 0")
    one_of("optim.schedule", o.schedule, SCHEDULES)
    number_in("optim.min_lr_ratio", o.min_lr_ratio, 0.0, 1.0)
    positive("optim.predictor_lr_scale", o.predictor_lr_scale)
    if not method_spec(cfg.method.name).traits.predictor:
        having = ", ".join(m for m in method_names() if method_spec(m).traits.predictor)
        why = f"for method {cfg.method.name!r}, which has no predictor ({having} has)"
        if o.predictor_lr_scale != 1.0:
            raise ConfigError("optim.predictor_lr_scale", o.predictor_lr_scale, "1.0 " + why)
        if o.predictor_fixed_lr:
            raise ConfigError("optim.predictor_fixed_lr", o.predictor_fixed_lr, "false " + why)


def _train(cfg: "Config") -> None:
    t = cfg.train
    int_at_least("train.epochs", t.epochs, 1)
    int_at_least("train.workers", t.workers, 1)
    int_at_least("train.batch_size", t.batch_size, 2)
    if t.batch_size % t.workers:
        raise ConfigError("train.batch_size", t.batch_size, f"a multiple of train.workers = {t.workers}")
    if t.batch_size // t.workers < 2:
        raise ConfigError("train.batch_size", t.batch_size,
                          f"at least 2 images per worker ({2 * t.workers} for {t.workers} workers)")
    positive("train.cpus_per_worker", t.cpus_per_worker)
    int_at_least("train.seed", t.seed, 0)
    int_at_least("train.checkpoint_every", t.checkpoint_every, 1)
    int_at_least("train.checkpoint_every_steps", t.checkpoint_every_steps, 0)
    int_at_least("train.num_to_keep", t.num_to_keep, 1)
    positive("train.cluster_wait_s", t.cluster_wait_s)
    one_of("train.precision", t.precision, PRECISIONS)
    if not isinstance(t.trackers, (tuple, list)) or len(set(t.trackers)) != len(t.trackers):
        raise ConfigError("train.trackers", t.trackers, "a list of distinct names of " + ", ".join(TRACKERS))
    for name in t.trackers:
        one_of("train.trackers", name, TRACKERS)
    if not isinstance(t.max_failures, int) or isinstance(t.max_failures, bool) or t.max_failures < -1:
        raise ConfigError("train.max_failures", t.max_failures, "an integer >= 0, or -1 for no limit")
    if cfg.optim.warmup_epochs > t.epochs:
        raise ConfigError("optim.warmup_epochs", cfg.optim.warmup_epochs,
                          f"at most train.epochs = {t.epochs}")


def _eval(cfg: "Config") -> None:
    e = cfg.eval
    if e.data_source is not None:
        _source("eval.data_source", e.data_source, "eval.data_path", e.data_path)
    elif e.data_path is not None:
        raise ConfigError("eval.data_path", e.data_path, "no path without eval.data_source (the source "
                          "it is a path of: parquet, folder, ...)")
    if e.data_num_images is not None:
        int_at_least("eval.data_num_images", e.data_num_images, 2)
    int_at_least("eval.knn_k", e.knn_k, 1)
    positive("eval.knn_temperature", e.knn_temperature)
    int_at_least("eval.knn_every", e.knn_every, 0)
    if e.knn_bank_size is not None:
        int_at_least("eval.knn_bank_size", e.knn_bank_size, 1)
    int_at_least("eval.linear_layer", e.linear_layer, 0)
    if e.linear_layer > cfg.model.proj_depth:
        raise ConfigError("eval.linear_layer", e.linear_layer,
                          f"0 (backbone h) to model.proj_depth = {cfg.model.proj_depth}")
    wds = e.linear_weight_decays
    if not (isinstance(wds, (tuple, list)) and wds and all(
            isinstance(w, (int, float)) and not isinstance(w, bool) and 0 <= w < math.inf for w in wds)):
        raise ConfigError("eval.linear_weight_decays", wds, "a non-empty list of numbers >= 0")
    int_at_least("eval.linear_steps", e.linear_steps, 1)
    int_at_least("eval.finetune_epochs", e.finetune_epochs, 1)
    int_at_least("eval.finetune_batch_size", e.finetune_batch_size, 2)
    positive("eval.finetune_lr", e.finetune_lr)
    if not isinstance(e.finetune_weight_decay, (int, float)) or e.finetune_weight_decay < 0:
        raise ConfigError("eval.finetune_weight_decay", e.finetune_weight_decay, "a number >= 0")
    int_at_least("eval.subset_seed", e.subset_seed, 0)
    int_at_least("eval.distill_epochs", e.distill_epochs, 1)
    positive("eval.distill_temperature", e.distill_temperature)
    number_in("eval.distill_alpha", e.distill_alpha, 0.0, 1.0)
    one_of("eval.distill_student", e.distill_student, ("random", "pretrained"))
    if not (isinstance(e.transform_tasks, (tuple, list)) and e.transform_tasks
            and all(t in TRANSFORM_TASKS for t in e.transform_tasks)):
        raise ConfigError("eval.transform_tasks", e.transform_tasks,
                          "a non-empty list of " + ", ".join(TRANSFORM_TASKS))
    int_at_least("eval.transform_images", e.transform_images, 8)
    int_at_least("eval.extract_actors", e.extract_actors, 1)
