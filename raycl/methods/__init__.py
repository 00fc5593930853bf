"""Self-supervised methods, one file each: a :class:`~raycl.methods.spec.MethodSpec` and a
:class:`~raycl.methods.base.Method` subclass. :data:`REGISTRY` is the one list of raycl's own; a
plugin adds its own (:func:`raycl.register_method`), and :func:`method_names` gives them all.

This package module stays torch-free (the configuration reads :data:`METHODS` from it); a method's
file, and torch with it, is imported on first use of its class or spec.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from raycl import plugins
from raycl.checks import ConfigError, nearest

if TYPE_CHECKING:
    from raycl.config import Config
    from raycl.methods.base import Method
    from raycl.methods.spec import MethodSpec

# method name -> "module:Class" in this package; adding a method is one line here and its file.
REGISTRY: dict[str, str] = {
    "simclr": "simclr:SimCLR",
    "simclrv2": "simclrv2:SimCLRv2",
    "moco": "moco:MoCo",
    "mocov2": "moco:MoCoV2",
    "byol": "byol:BYOL",
    "swav": "swav:SwAV",
    "barlow_twins": "barlow_twins:BarlowTwins",
}
METHODS: tuple[str, ...] = tuple(REGISTRY)
plugins.RESERVED["method"] = METHODS


def method_names() -> tuple[str, ...]:
    """raycl's methods, then those plugins registered (:mod:`raycl.plugins`)."""
    return plugins.method_names(METHODS)


def check_method_name(name: str) -> None:
    """A :class:`ConfigError` naming the methods there are when ``name`` is not one of them."""
    names = method_names()
    if not isinstance(name, str) or name not in names:
        raise ConfigError("method.name", name, "one of " + ", ".join(names) + nearest(name, names)
                          + " (a method of your own: raycl.register_method in a plugin, see --plugin)")


def method_class(name: str) -> type["Method"]:
    """The class implementing method ``name`` (imports its file)."""
    check_method_name(name)
    if name in plugins.METHODS:
        return plugins.METHODS[name]
    module, _, cls = REGISTRY[name].partition(":")
    found = getattr(importlib.import_module(f"{__name__}.{module}"), cls)
    if found.spec.name != name:
        raise RuntimeError(f"REGISTRY[{name!r}] names {found.__name__}, whose spec is {found.spec.name!r}")
    return found


def method_spec(name: str) -> "MethodSpec":
    """What method ``name`` declares: options, paper defaults per scale, traits."""
    return method_class(name).spec


def build_method(cfg: "Config") -> "Method":
    """Instantiate the method named by ``cfg.method.name``."""
    return method_class(cfg.method.name)(cfg)


def __getattr__(name: str):
    # lazy re-exports, so that importing this package does not import torch
    if name in ("Method", "Progress"):
        return getattr(importlib.import_module(f"{__name__}.base"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["METHODS", "REGISTRY", "Method", "Progress", "build_method", "check_method_name", "method_class",
           "method_names",
           "method_spec"]
