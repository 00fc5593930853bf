"""Dotted keys: which ones a configuration accepts, and what a short key (``epochs``) stands for."""

from __future__ import annotations

from dataclasses import fields

from raycl.checks import ConfigError, closest, nearest
from raycl.config.sections import SECTION_CLASSES, TOP_LEVEL, unknown_option
from raycl.methods import method_spec


def section_keys() -> list[str]:
    """The dotted keys of the sections every method shares (``data.*`` … ``eval.*``)."""
    return [f"{s}.{f.name}" for s, cls in SECTION_CLASSES.items() for f in fields(cls)]


def method_keys(method: str) -> list[str]:
    return ["method.name"] + [f"method.{k}" for k in method_spec(method).option_defaults()]


def all_keys(method: str = "simclr") -> list[str]:
    """Every dotted key a configuration of ``method`` accepts."""
    return sorted(section_keys() + method_keys(method) + list(TOP_LEVEL))


def _unknown(key: str, known: list[str]) -> str:
    """What to say about a field that does not exist: the nearest one, and where to find them all."""
    fields_ = [*known, *TOP_LEVEL]
    hint = nearest(key, fields_)
    if not hint:  # a mistyped leaf ("epohcs", "train.storage_path") matched on leaves alone
        by_leaf = {f.rsplit(".", 1)[-1]: f for f in fields_}
        leaf = closest(key.rsplit(".", 1)[-1], list(by_leaf))
        hint = f" (did you mean {by_leaf[leaf]!r}?)" if leaf else ""
    return f"an existing field{hint}; `python -m raycl keys` lists them; known fields: " + ", ".join(known)


def resolve_key(key: str, method: str = "simclr") -> str:
    """Map ``"epochs"`` to ``"train.epochs"``; dotted keys are checked and returned unchanged.

    ``method.*`` keys are checked against ``method``'s options."""
    if key in TOP_LEVEL:
        return key
    known = all_keys(method)
    if "." in key:
        if key in known:
            return key
        section, _, leaf = key.partition(".")
        if section == "method":
            raise ConfigError(key, "(override)", unknown_option(method, leaf))
        raise ConfigError(key, "(override)", _unknown(key, known))
    paths = [k for k in known if k.endswith("." + key)]
    if not paths:
        raise ConfigError(key, "(override)", _unknown(key, known))
    if len(paths) > 1:
        raise ConfigError(key, "(override)", "an unambiguous name; use one of " + ", ".join(paths))
    return paths[0]
