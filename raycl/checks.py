"""``ConfigError`` and the value checks shared by the configuration and the method specs.

Torch-free and free of other raycl imports, so that both :mod:`raycl.config` and the method specs
(:mod:`raycl.methods.spec`) can use it without importing each other. Every check raises a
:class:`ConfigError` naming the field, the value and what is allowed.
"""

from __future__ import annotations

import ast
import math
from typing import Any, Callable

Check = Callable[[str, Any], None]  # check(field_name, value) raises ConfigError or returns None


class ConfigError(ValueError):
    """A configuration value is not allowed. The message names the field, the value and the rule."""

    def __init__(self, field_name: str, value: Any, allowed: str):
        self.field = field_name
        self.value = value
        self.allowed = allowed
        super().__init__(f"{field_name} = {value!r} is not allowed: {allowed}")

    def __reduce__(self):  # rebuilt from its fields when Ray carries it out of a worker
        return type(self), (self.field, self.value, self.allowed)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def closest(value: Any, allowed) -> str | None:
    """The allowed name closest to a mistyped one (difflib, case-insensitive fallback), or None."""
    if not isinstance(value, str):
        return None
    import difflib

    names = [str(a) for a in allowed]
    close = difflib.get_close_matches(value, names, n=1, cutoff=0.6) or \
        difflib.get_close_matches(value.lower(), [n.lower() for n in names], n=1, cutoff=0.6)
    return next(n for n in names if n.lower() == close[0].lower()) if close else None


def nearest(value: Any, allowed) -> str:
    """`` (did you mean 'x'?)`` for the allowed name closest to a mistyped one, else ``""``."""
    match = closest(value, allowed)
    return f" (did you mean {match!r}?)" if match else ""


def one_of(name: str, value: Any, allowed: tuple, prefixes: tuple = ()) -> None:
    if value in allowed or (prefixes and isinstance(value, str) and value.startswith(prefixes)):
        return
    extra = [p + "..." for p in prefixes]
    names = ", ".join(list(map(str, allowed)) + extra)
    raise ConfigError(name, value, f"one of {names}{nearest(value, allowed)}")


def positive(name: str, value: Any) -> None:
    if not _is_number(value) or not value > 0 or not math.isfinite(value):
        raise ConfigError(name, value, "a finite number > 0")


def int_at_least(name: str, value: Any, low: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ConfigError(name, value, f"an integer >= {low}")


def int_between(name: str, value: Any, low: int, high: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ConfigError(name, value, f"an integer from {low} to {high}")


def number_in(name: str, value: Any, low: float, high: float, high_open: bool = False) -> None:
    ok = _is_number(value) and low <= value and (value < high if high_open else value <= high)
    if not ok:
        raise ConfigError(name, value, f"a number in [{low:g}, {high:g}{')' if high_open else ']'}")


def scale_range(name: str, value: Any) -> None:
    ok = (isinstance(value, (tuple, list)) and len(value) == 2 and all(map(_is_number, value))
          and 0.0 < value[0] <= value[1] <= 1.0)
    if not ok:
        raise ConfigError(name, value, "a pair (low, high) with 0 < low <= high <= 1")


# Check factories for the method specs' options (``Option(..., check=at_least(1))``).
def at_least(low: int) -> Check:
    return lambda name, value: int_at_least(name, value, low)


def between(low: float, high: float) -> Check:
    return lambda name, value: number_in(name, value, low, high)


def choice(*allowed: str) -> Check:
    return lambda name, value: one_of(name, value, allowed)


# --------------------------------------------------------------------------- value coercion
def coerce(name: str, value: Any, default: Any) -> Any:
    """Light type coercion against a field's default: ints given for floats, strings from the CLI
    for numbers and booleans, lists for tuples; a value of the wrong kind is a ConfigError."""
    if isinstance(value, str) and not isinstance(default, str) and default is not None:
        value = parse_value(value)
    if isinstance(value, str) and isinstance(default, tuple):  # the CLI's "flip,blur"
        return tuple(part.strip() for part in value.split(",") if part.strip())
    if isinstance(value, list) and (default is None or isinstance(default, tuple)):
        return tuple(value)
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(name, value, "true or false")
        return value
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(default, int) and isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(default, (int, float)) and not _is_number(value):
        raise ConfigError(name, value, f"a number (like {default!r})")
    if isinstance(default, int) and not isinstance(default, bool) and isinstance(value, float):
        raise ConfigError(name, value, "an integer")
    return value


def parse_value(text: str) -> Any:
    """Parse a CLI value: numbers, true/false/none, Python literals; anything else stays a string."""
    lowered = text.strip().lower()
    if lowered in ("true", "yes", "on"):
        return True
    if lowered in ("false", "no", "off"):
        return False
    if lowered in ("none", "null"):
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_sets(pairs) -> dict[str, Any]:
    """``["optim.lr=0.3", ...]`` (the CLI's ``--set``) as ``{"optim.lr": 0.3, ...}``."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError("--set", pair, "KEY=VALUE, e.g. optim.lr=0.3")
        out[key.strip()] = parse_value(value)
    return out
