"""Field declarations shared by the policy model, its loader and the generated CRD schema.

Every constraint on a spec field is declared once, here-style, next to the field: the loader
(`policy.loading`) enforces it in Python and the CRD generator (`policy.schema`) writes it into the
OpenAPI schema / CEL rules the API server enforces. That keeps ``lumenctl validate`` and
``kubectl apply`` in agreement.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

_MISSING: Any = dataclasses.MISSING


@dataclass(frozen=True)
class Cel:
    """A rule the API server checks (``x-kubernetes-validations``) and the loader mirrors.

    ``check`` receives the loaded Python value of the field or object and returns False when the
    rule is broken; ``message`` is what both the API server and ``lumenctl`` report. A rule with
    no ``check`` is one ``policy.validation`` checks with a more precise path and message.
    """

    rule: str
    message: str
    check: Callable[[Any], bool] | None = None


@dataclass(frozen=True)
class FieldDoc:
    description: str
    key: str | None = None
    pattern: str | None = None
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    exclusive_maximum: bool = False
    min_length: int | None = None
    max_length: int | None = None
    min_items: int | None = None
    max_items: int | None = None
    max_properties: int | None = None
    key_pattern: str | None = None
    list_map_key: str | None = None
    rules: tuple[Cel, ...] = ()


def spec_field(
    description: str,
    *,
    default: Any = _MISSING,
    default_factory: Any = _MISSING,
    **constraints: Any,
) -> Any:
    """A dataclass field with its documentation and constraints attached."""
    doc = FieldDoc(description=description, **constraints)
    if doc.pattern is not None:
        re.compile(doc.pattern)
    return dataclasses.field(
        default=default, default_factory=default_factory, metadata={"lumen": doc}
    )


def field_doc(field: dataclasses.Field[Any]) -> FieldDoc:
    doc = field.metadata.get("lumen")
    if not isinstance(doc, FieldDoc):
        raise TypeError(f"field {field.name!r} was not declared with spec_field()")
    return doc


def field_key(field: dataclasses.Field[Any]) -> str:
    """The field's name in YAML: camelCase unless the declaration overrides it."""
    doc = field_doc(field)
    if doc.key:
        return doc.key
    head, *rest = field.name.rstrip("_").split("_")
    return head + "".join(part.capitalize() for part in rest)


def one_of(*keys: str) -> Cel:
    """Exactly one of the object's optional fields ``keys`` is set."""
    has = ", ".join(f"has(self.{key})" for key in keys)
    names = ", ".join(f"`{key}`" for key in keys)
    attrs = [_attr(key) for key in keys]
    return Cel(
        rule=f"[{has}].filter(x, x).size() == 1",
        message=f"set exactly one of {names}",
        check=lambda obj: sum(getattr(obj, a) is not None for a in attrs) == 1,
    )


def contains(text: str) -> Cel:
    """A string field contains ``text``."""
    return Cel(
        rule=f"self.contains('{text}')",
        message=f"must contain {text}",
        check=lambda value: text in value,
    )


def _attr(key: str) -> str:
    """Python attribute for a YAML key (``from`` is ``from_``)."""
    snake = re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower()
    return snake + "_" if snake in {"from", "for", "continue"} else snake
