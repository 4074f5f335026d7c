"""``check_params``: the declaration and parameter handling every strategy shares.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from engine.errors import InvalidInputError
from engine.strategies import BASES, Param, Strategy
from engine.testing.failures import fail, label

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def _alternative(spec: Param) -> Any:
    """A valid non-default value of a parameter, or None when there is no obvious one."""
    if spec.choices is not None:
        return next((c for c in spec.choices if c != spec.default), None)
    if spec.type is bool:
        return not spec.default
    if spec.type in (int, float) and isinstance(spec.default, int | float):
        for candidate in (spec.default + 1, spec.default - 1):
            if (spec.minimum is None or candidate >= spec.minimum) and (
                spec.maximum is None or candidate <= spec.maximum
            ):
                return spec.type(candidate)
        if spec.minimum is not None and spec.maximum is not None:
            middle = spec.type((spec.minimum + spec.maximum) / 2)
            return middle if middle != spec.default else None
    return None


def _same_value(a: Any, b: Any) -> bool:
    """Equal and of the same type (3 is not 3.0: parameters are stored as validated)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float) and math.isnan(a) and math.isnan(b):
        return True
    return bool(a == b)


def check_params(cls: type[Strategy], params: Mapping[str, Any] | None = None) -> Strategy:
    """Check the declaration and parameter handling of a strategy class; return an instance
    built from ``params`` (default: all defaults).

    ``params`` are non-default values you want checked too; they must pass validation.
    """
    if not isinstance(cls, type) or not issubclass(cls, Strategy):
        raise AssertionError(f"{cls!r} is not a subclass of engine.strategies.Strategy")
    base = BASES.get(cls.kind)
    if base is None or not issubclass(cls, base):
        fail(cls, f"must subclass one of {', '.join(b.__name__ for b in BASES.values())} "
                   f"and keep its kind (got kind {cls.kind!r})")
    if not isinstance(cls.name, str) or not _NAME.fullmatch(cls.name):
        fail(cls, "name must be a non-empty string of letters, digits, '.', '_' or '-' "
                   "(it is what plans and `equity plugins` use)")
    if not isinstance(cls.summary, str) or not cls.summary.strip():
        fail(cls, "summary must be a one-line description (`equity plugins` shows it)")
    if not isinstance(cls.params, Mapping):
        fail(cls, "params must be a mapping of parameter names to engine.strategies.Param")
    defaults: dict[str, Any] = {}
    for key, spec in cls.params.items():
        if not isinstance(key, str) or not key.isidentifier():
            fail(cls, f"parameter name {key!r} must be a Python identifier")
        if not isinstance(spec, Param):
            fail(cls, f"params[{key!r}] must be an engine.strategies.Param, got {spec!r}")
        if not isinstance(spec.doc, str) or not spec.doc.strip():
            fail(cls, f"parameter {key!r} needs a doc string (`equity plugins` shows it)")
        try:
            checked = spec.check(f"params.{key}", spec.default)
        except InvalidInputError as exc:
            fail(cls, f"default of parameter {key!r} fails its own declaration: {exc}")
        if not _same_value(checked, spec.default):
            fail(cls, f"default of parameter {key!r} is {spec.default!r}, which validates "
                       f"as {checked!r}; declare it as {checked!r}")
        defaults[key] = spec.default

    instance = _construct(cls, {})
    _check_stored(cls, instance, defaults, "from_params({})")
    _check_stored(cls, _instantiate(cls, defaults), defaults, "__init__ with every default")

    try:
        cls.from_params({"__not_a_parameter__": 1})
    except InvalidInputError as exc:
        if not any("__not_a_parameter__" in v.field for v in exc.violations):
            fail(cls, f"from_params rejected an unknown parameter without naming it: {exc}")
    except Exception as exc:
        fail(cls, f"from_params must raise InvalidInputError for an unknown parameter, "
                   f"raised {exc!r}")
    else:
        fail(cls, "from_params accepted an unknown parameter '__not_a_parameter__'")

    for key, spec in cls.params.items():
        alternative = _alternative(spec)
        if alternative is not None:
            expected = defaults | {key: alternative}
            _check_stored(cls, _construct(cls, {key: alternative}), expected,
                          f"from_params({{{key!r}: {alternative!r}}})")

    if params:
        unknown = sorted(set(params) - set(cls.params))
        if unknown:
            raise AssertionError(f"check_params: {unknown} are not parameters of {label(cls)}")
        instance = _construct(cls, params)
        expected = defaults | {
            k: cls.params[k].check(f"params.{k}", v) for k, v in params.items()
        }
        _check_stored(cls, instance, expected, f"from_params({dict(params)!r})")
    return instance


def _construct(cls: type[Strategy], params: Mapping[str, Any]) -> Strategy:
    try:
        instance = cls.from_params(params)
    except Exception as exc:
        fail(cls, f"from_params({dict(params)!r}) raised {exc!r}")
    if not isinstance(instance, cls):
        fail(cls, f"from_params returned {type(instance).__name__}, not {cls.__name__}")
    return instance


def _instantiate(cls: type[Strategy], values: Mapping[str, Any]) -> Strategy:
    try:
        return cls(**values)
    except Exception as exc:
        fail(cls, f"__init__ must accept every declared parameter as a keyword, "
                   f"raised {exc!r}")


def _check_stored(
    cls: type[Strategy], instance: Strategy, expected: Mapping[str, Any], how: str
) -> None:
    stored = vars(instance)
    for key, value in expected.items():
        if key not in stored:
            fail(cls, f"after {how}, parameter {key!r} is not stored on the instance; "
                       f"__init__ must set self.{key}")
        if not _same_value(stored[key], value):
            fail(cls, f"after {how}, self.{key} is {stored[key]!r}, expected {value!r}; "
                       "__init__ must store parameters unchanged")
    extra = sorted(set(stored) - set(cls.params))
    if extra:
        fail(cls, f"after {how}, the instance has undeclared attributes {extra}; __init__ "
                   "stores declared parameters only (declare them as Param, or compute "
                   "them inside compute/build/allocate)")
    if instance.get_params() != dict(expected):
        fail(cls, f"get_params() after {how} is {instance.get_params()!r}, expected "
                   f"{dict(expected)!r}")
