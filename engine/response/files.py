"""The curves document of ``equity fit-response`` as the plan's ``ResponseCurve`` values.

The document is ``{"curves": [{"segment", "kind", "model", "base", "ceiling", "k", "shape",
"parameters", "covariance", ...}]}``; only those keys are read (the fit statistics beside
them are for people). ``covariance`` is the matrix over ``parameters``; a curve written by
hand may leave both out, and then counts as given (``file``), not estimated (``fitted``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from engine.errors import InvalidInputError
from engine.plan import ResponseCurve, curve_parameters


def read_curves(path: str | Path, field: str = "--response") -> tuple[ResponseCurve, ...]:
    try:
        document = json.loads(Path(path).read_text())
    except OSError as exc:
        raise InvalidInputError.single(field, f"cannot read {path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise InvalidInputError.single(field, f"{path} is not JSON: {exc}") from None
    return curves_from_document(document, field)


def curves_from_document(document: Any, field: str = "curves") -> tuple[ResponseCurve, ...]:
    items = document.get("curves") if isinstance(document, Mapping) else None
    if not isinstance(items, list):
        raise InvalidInputError.single(field, 'expected {"curves": [...]} as written by '
                                       "`equity fit-response --output`")
    curves, problems = [], []
    for i, item in enumerate(items):
        path = f"{field}.curves[{i}]"
        try:
            curves.append(_curve(item, path))
        except InvalidInputError as exc:
            problems.extend(exc.violations)
            continue
        problems.extend(curves[-1].problems(path))
    if problems:
        raise InvalidInputError(problems)
    return tuple(curves)


def _number(item: Mapping[str, Any], key: str, path: str, default: float | None = None) -> float:
    value = item.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidInputError.single(f"{path}.{key}", f"must be a number, got {value!r}")
    return float(value)


def _curve(item: Any, path: str) -> ResponseCurve:
    if not isinstance(item, Mapping):
        raise InvalidInputError.single(path, "must be an object")
    kind, model = item.get("kind"), item.get("model") or "exponential"
    shape = item.get("shape")
    names = curve_parameters(str(kind), str(model))
    matrix = item.get("covariance") or []
    if matrix and list(item.get("parameters", names)) != list(names):
        raise InvalidInputError.single(
            f"{path}.parameters", f"must be {list(names)} for a {model} {kind} curve")
    flat = [v for row in matrix for v in (row if isinstance(row, list) else [row])]
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in flat):
        raise InvalidInputError.single(f"{path}.covariance", "must be a matrix of numbers")
    return ResponseCurve(
        segment=str(item.get("segment", "")),
        kind=str(kind),
        base=_number(item, "base", path, 0.0),
        ceiling=_number(item, "ceiling", path),
        k=_number(item, "k", path),
        model=str(model),
        shape=None if shape is None else _number(item, "shape", path),
        covariance=tuple(float(v) for v in flat),
    )
