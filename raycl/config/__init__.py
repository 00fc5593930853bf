"""Typed run configuration, its validation and the presets.

A :class:`Config` is a tree of small sections, one per concern, plus the chosen method's own
options (declared by its spec in :mod:`raycl.methods`). It is validated once, at the boundary
(:meth:`Config.validate`), and every bad value raises a :class:`ConfigError` that names the field,
the value and what is allowed. Overrides use dotted paths (``"optim.lr"``) or, when unambiguous, a
bare field name (``"epochs"``)::

    cfg = preset("tiny", "byol").override({"optim.lr": 3e-3, "epochs": 3})
    cfg = from_overrides({"preset": "tiny", "method": "byol", "optim.lr": 3e-3})   # the same run

Modules: :mod:`~raycl.config.sections` (the sections and the allowed names),
:mod:`~raycl.config.keys` (dotted keys), :mod:`~raycl.config.validate`, :mod:`~raycl.config.core`
(:class:`Config`) and :mod:`~raycl.config.presets`. Torch-free: a method's spec, and torch with it,
is imported when a configuration of that method is made.
"""

from raycl.checks import ConfigError, parse_value
from raycl.config.core import Config
from raycl.config.keys import all_keys, resolve_key
from raycl.config.presets import PRESETS, from_overrides, preset
from raycl.config.validate import pair_ops
from raycl.config.sections import (AUGMENT_BACKENDS, BACKBONES, COMPUTES, LR_SCALINGS, OPTIMIZERS,
                                   PAIR_OPS, PRECISIONS, RECIPES, REMOVABLE_OPS, SCHEDULES, SOURCES, TRACKERS,
                                   TRANSFORM_TASKS, AugmentConfig, DataConfig, EvalConfig, MethodConfig,
                                   ModelConfig, OptimConfig, TrainConfig)
from raycl.methods import METHODS

__all__ = ["AUGMENT_BACKENDS", "BACKBONES", "COMPUTES", "LR_SCALINGS", "METHODS", "OPTIMIZERS",
           "PAIR_OPS", "PRECISIONS", "PRESETS", "RECIPES", "REMOVABLE_OPS", "SCHEDULES", "SOURCES", "TRACKERS",
           "TRANSFORM_TASKS", "AugmentConfig", "Config", "ConfigError", "DataConfig", "EvalConfig",
           "MethodConfig", "ModelConfig", "OptimConfig", "TrainConfig", "all_keys", "from_overrides",
           "pair_ops", "parse_value", "preset", "resolve_key"]
