"""raycl: self-supervised contrastive learning (SimCLR, MoCo, BYOL, SwAV, Barlow Twins) on Ray.

>>> import raycl
>>> result = raycl.run(method="simclr", workers=2, preset="tiny")   # doctest: +SKIP
>>> result.history[["epoch", "loss", "knn_top1"]]                      # doctest: +SKIP
>>> sweep = raycl.sweep("augmentation", preset="tiny")               # doctest: +SKIP
>>> raycl.load_sweep(sweep.path).trials                               # doctest: +SKIP

``run``, ``sweep``, ``load_sweep``, ``evaluate``, ``export``, ``make_config``, ``RunResult`` and the
plugin decorators ``register_method``, ``register_recipe`` and ``register_op`` (:mod:`raycl.plugins`)
are imported on first use, so ``import raycl`` and the configuration stay light (no Ray, no torch
import).
"""

from raycl.config import Config, ConfigError, preset

__all__ = ["Config", "ConfigError", "RunResult", "evaluate", "export", "load_sweep", "make_config", "preset",
           "register_method", "register_op", "register_recipe", "run", "sweep"]
__version__ = "0.1.0"

_LAZY = {"run", "make_config", "RunResult"}


def __getattr__(name: str):
    if name in ("register_method", "register_recipe", "register_op"):
        import raycl.plugins

        return getattr(raycl.plugins, name)
    if name == "export":
        from raycl.weights import export

        return export
    if name == "evaluate":
        from raycl.protocols import evaluate

        return evaluate
    if name in ("sweep", "load_sweep"):
        import raycl.sweeps

        return getattr(raycl.sweeps, name)
    if name in _LAZY:
        from raycl import api

        return getattr(api, name)
    raise AttributeError(f"module 'raycl' has no attribute {name!r}")
