"""Field declarations shared by the policy model, its loader and the generated CRD schema.

Every constraint on a spec field is declared once, next to the field, and read by three
consumers: the loader (``policy.loading``) enforces it in Python, the CRD generator
(``policy.schema``) writes it into the OpenAPI schema and CEL rules the API server enforces, and
the reference (``docs/policy-reference.md``, generated from that CRD) describes it. That keeps
``lumenctl validate``, ``kubectl apply`` and ``kubectl explain`` in agreement.

The shapes:

- ``spec_field(description, default=..., **constraints)`` is a ``dataclasses.field`` carrying a
  ``FieldDoc`` in its metadata. Keyword constraints are ``FieldDoc``'s fields: ``pattern``,
  ``minimum``/``maximum`` (``exclusive_*``), ``min_length``/``max_length``,
  ``min_items``/``max_items``, ``max_properties``, ``key_pattern`` (map keys),
  ``list_map_key`` (a list of objects keyed by that field, unique), ``rules`` (``Cel`` on the
  value) and ``key`` (the YAML name, when camelCase of the attribute will not do: ``for_`` ->
  ``for``). A field without a default is required. A plain dataclass field (no
  ``spec_field``) is invisible to the schema and the loader (``Policy.uid``).
- The type comes from the annotation: ``str``/``int``/``float``/``bool``, ``Literal[...]``
  (an enum), ``list[X]``, ``dict[str, X]``, another spec dataclass (a nested object), and
  ``X | None`` (optional). That is what makes the CRD schema structural: every node has a type.
- ``Cel(rule, message, check)``: a rule the API server checks (``x-kubernetes-validations``)
  and the loader mirrors with ``check``. Object-level rules go in the class's ``__rules__``;
  ``one_of`` and ``contains`` build the common ones.

A tiny example::

    @dataclass(frozen=True)
    class Probe:
        name: str = spec_field("Probe name.", pattern=r"^[a-z-]+$", max_length=63)
        url: str | None = spec_field("Probe this URL.", default=None)
        command: str | None = spec_field("Or run this command.", default=None)
        interval_seconds: int = spec_field("How often.", default=20, minimum=1)
        __rules__: ClassVar[tuple[Cel, ...]] = (one_of("url", "command"),)

``policy.schema.object_schema(Probe)`` gives ``{type: object, required: [name], properties:
{name: {type: string, pattern, maxLength: 63, description}, ..., intervalSeconds: {type:
integer, default: 20, minimum: 1}}, x-kubernetes-validations: [{rule: "[has(self.url),
has(self.command)].filter(x, x).size() == 1", message: "set exactly one of `url`,
`command`"}]}``, and ``policy.loading.load(Probe, {"name": "api"}, "spec.probes[0]")`` raises
``InvalidPolicy`` with the one problem "spec.probes[0]: set exactly one of `url`, `command`".

Why not pydantic: one declaration here yields the structural CRD schema (defaults, limits,
list-map keys), its CEL rules and a loader that reports every problem as ``path: reason``;
pydantic would give the loader, but its JSON Schema is not a structural Kubernetes schema and
knows no CEL, so it would need a post-processor of its own on top.
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
    """What ``spec_field`` attaches to a field: its description and constraints (None: none)."""

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
    """A dataclass field with its documentation and constraints attached.

    ``constraints`` are ``FieldDoc``'s fields (an unknown one is a TypeError at import); a
    ``pattern`` is compiled once here, so a bad one fails at import, not on the first policy.
    """
    doc = FieldDoc(description=description, **constraints)
    if doc.pattern is not None:
        re.compile(doc.pattern)
    return dataclasses.field(
        default=default, default_factory=default_factory, metadata={"lumen": doc}
    )


def field_doc(field: dataclasses.Field[Any]) -> FieldDoc:
    """The ``FieldDoc`` of a field declared with ``spec_field`` (TypeError for any other)."""
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
