"""User extensions without forking raycl: methods, augmentation recipes and ops from the user's module.

A plugin is a module (a dotted name importable here) or a ``.py`` file that registers what it adds
when it is imported::

    @raycl.register_method            # a Method subclass whose spec names it: method.name=simsiam
    class SimSiam(Method): ...

    @raycl.register_recipe("weak", crop_scale=(0.5, 1.0))   # augment.recipe=weak
    def weak(size, strength, blur, crop): ...

    @raycl.register_op("invert")                             # augment.recipe=pair:crop,invert
    def invert(size, strength): ...

A run names its plugins in ``plugins`` (``--plugin simsiam.py`` on the command line): every process
that reads the run's configuration (the driver, Ray Train's workers, Tune's trials, the augmentation
actors) imports them before anything else, so their names mean the same everywhere. Packages can
instead declare an entry point in group ``raycl.plugins``; those are imported the first time a name
is looked up. Torch-free: the registries hold what the plugins give them, and the configuration
reads the names from here.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from raycl.checks import ConfigError

ENTRY_POINT_GROUP = "raycl.plugins"


@dataclass(frozen=True)
class Recipe:
    """A registered augmentation recipe: ``build(size, strength, blur, crop)`` returns one
    ``ViewPipeline`` per view (as raycl's own recipes in :mod:`raycl.data.augment.recipes`), and
    ``crop_scale`` is the area range of the ``crop()`` it is given."""

    build: Callable[..., list]
    crop_scale: tuple[float, float]


METHODS: dict[str, type] = {}  # method name -> Method subclass, from plugins
RECIPES: dict[str, Recipe] = {}  # recipe name -> Recipe, from plugins
OPS: dict[str, Callable] = {}  # op name -> build(size, strength), from plugins: ops of "pair:a,b"
# raycl's own names, which a plugin cannot take: filled in by raycl.methods and raycl.config.sections
# (this module imports neither, so that both can import it)
RESERVED: dict[str, tuple[str, ...]] = {"method": (), "recipe": (), "op": ()}
_loaded: dict[str, None] = {}  # the references imported here, in order
_entry_points_loaded = False
_entry_point_modules: set[str] = set()


def register_method(cls: type) -> type:
    """Class decorator: make a :class:`~raycl.methods.base.Method` subclass a method of raycl under
    its ``spec.name``. A built-in name cannot be taken; the same class registered twice is fine."""
    spec = getattr(cls, "spec", None)
    is_method = isinstance(cls, type) and any(c.__name__ == "Method" and c.__module__ == "raycl.methods.base"
                                              for c in cls.__mro__)
    if not (is_method and isinstance(getattr(spec, "name", None), str)):
        raise TypeError(f"register_method takes a subclass of raycl.methods.Method with a MethodSpec "
                        f"as its 'spec', not {cls!r}")
    _check_free(spec.name, "method", METHODS, cls)
    METHODS[spec.name] = cls
    return cls


def register_recipe(name: str, crop_scale: tuple[float, float] = (0.08, 1.0)) -> Callable:
    """Decorator: register ``build(size, strength, blur, crop)`` as augmentation recipe ``name``;
    ``crop()`` makes the recipe's random resized crop over ``crop_scale`` (``augment.crop_scale``
    overrides it), ``strength`` is ``augment.color_strength``, ``blur`` is ``augment.blur``."""
    if not isinstance(name, str) or not name or ":" in name:
        raise ValueError(f"a recipe name is a non-empty string without ':', not {name!r}")
    low, high = (float(v) for v in crop_scale)
    if not 0 < low <= high <= 1:
        raise ValueError(f"crop_scale must be (low, high) with 0 < low <= high <= 1, got {crop_scale!r}")

    def register(build: Callable) -> Callable:
        _check_free(name, "recipe", {k: r.build for k, r in RECIPES.items()}, build)
        RECIPES[name] = Recipe(build, (low, high))
        return build

    return register


def register_op(name: str) -> Callable:
    """Decorator: register ``build(size, strength)`` as augmentation op ``name``, which a
    ``pair:a,b`` recipe (SimCLR Fig. 5's grid) can then name beside raycl's ops. ``build`` returns
    the op: a callable ``op(x, generator)`` on a float batch ``[B, 3, H, W]`` in [0, 1] returning
    one of the same shape, drawing its randomness from ``generator`` only (so views are reproducible
    and the same on every worker); ``size`` is the views' side, ``strength`` is
    ``augment.color_strength``. Such ops run on torch (the fused kernel knows raycl's ops only)."""
    if not isinstance(name, str) or not name or any(c in name for c in ":, "):
        raise ValueError(f"an op name is a non-empty string without ':', ',' or spaces, not {name!r}")

    def register(build: Callable) -> Callable:
        _check_free(name, "op", OPS, build)
        OPS[name] = build
        return build

    return register


def _check_free(name: str, kind: str, registered: dict, thing: Any) -> None:
    if name in RESERVED[kind]:
        raise ValueError(f"{kind} {name!r} is one of raycl's own; give yours another name")
    old = registered.get(name)
    if old is not None and _where(old) != _where(thing):
        raise ValueError(f"{kind} {name!r} is already registered by {_where(old)}")


def _where(thing: Any) -> str:
    return f"{getattr(thing, '__module__', '?')}.{getattr(thing, '__qualname__', '?')}"


# ------------------------------------------------------------------------------------ loading
def resolve(plugins: Sequence[str] | str | None) -> tuple[str, ...]:
    """``plugins`` as the configuration keeps them: a tuple, ``.py`` files as absolute paths (so a
    Ray worker whose working directory differs finds them), module names unchanged."""
    if plugins is None:
        return ()
    if isinstance(plugins, str):
        plugins = [p for p in plugins.split(",")]
    out = []
    for ref in plugins:
        if not isinstance(ref, str) or not ref.strip():
            raise ConfigError("plugins", plugins, "module names or .py files")
        ref = ref.strip()
        out.append(os.path.abspath(os.path.expanduser(ref)) if ref.endswith(".py") else ref)
    return tuple(out)


def load(plugins: Sequence[str] | str | None) -> tuple[str, ...]:
    """Import each plugin once in this process; return them as :func:`resolve` gives them. A file
    or module that cannot be imported is a :class:`ConfigError` naming it and why."""
    refs = resolve(plugins)
    for ref in refs:
        if ref in _loaded:
            continue
        try:
            _import(ref)
        except ConfigError:
            raise
        except Exception as exc:  # the user's code: anything it raises while importing
            raise ConfigError("plugins", ref, f"an importable module or .py file; importing it raised "
                              f"{type(exc).__name__}: {exc}") from exc
        _loaded[ref] = None
    return refs


def loaded() -> tuple[str, ...]:
    """The plugins this process has imported through :func:`load` (``--plugin``, ``plugins=``)."""
    return tuple(_loaded)


def _import(ref: str) -> None:
    if not ref.endswith(".py"):
        importlib.import_module(ref)
        return
    if not os.path.isfile(ref):
        raise ConfigError("plugins", ref, "an existing .py file (or a module name)")
    # one module name per file, so that pickled references to its classes find it again here
    name = module_of(ref)
    if name in sys.modules:
        return
    spec = importlib.util.spec_from_file_location(name, ref)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise


def load_entry_points() -> None:
    """Import the plugins installed packages declare (group ``raycl.plugins``), once."""
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        point.load()
        _entry_point_modules.add(point.module)


def module_of(ref: str) -> str:
    """The module name a plugin reference is imported as."""
    if not ref.endswith(".py"):
        return ref
    stem = os.path.splitext(os.path.basename(ref))[0]
    return f"raycl_plugin_{stem}_{hashlib.sha1(ref.encode()).hexdigest()[:8]}"


def check_shipped(key: str, name: str, refs: Sequence[str], kind: str | None = None) -> None:
    """A :class:`ConfigError` when ``name`` (a method, recipe or op: ``kind``, by default what ``key``
    names) was registered by a module that the run's other processes would not import: one that is
    neither among ``refs`` (the run's ``plugins``) nor installed as an entry point."""
    kind = kind or ("method" if key == "method.name" else "recipe")
    registry = {"method": METHODS, "recipe": {k: r.build for k, r in RECIPES.items()}, "op": OPS}[kind]
    thing = registry.get(name)
    if thing is None:
        return
    module = thing.__module__
    if module in {module_of(ref) for ref in refs} | _entry_point_modules:
        return
    if module == "__main__":
        raise ConfigError(key, name, "a name the run's workers know too: it is registered in the script "
                          "being run (__main__), which they cannot import; move it to a .py file and name "
                          "that in plugins (CLI: --plugin FILE)")
    where = getattr(sys.modules.get(module), "__file__", None) or module
    raise ConfigError(key, name, f"a name the run's workers know too: it is registered by {where}, which "
                      f"they import only if the run names it in plugins (CLI: --plugin FILE)")


def method_names(built_in: Sequence[str]) -> tuple[str, ...]:
    load_entry_points()
    return (*built_in, *METHODS)


def recipe_names(built_in: Sequence[str]) -> tuple[str, ...]:
    load_entry_points()
    return (*built_in, *RECIPES)


def op_names(built_in: Sequence[str]) -> tuple[str, ...]:
    load_entry_points()
    return (*built_in, *OPS)
