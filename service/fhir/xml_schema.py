"""What the XML form of a FHIR type needs to know about its elements, read from the models.

FHIR XML differs from FHIR JSON in what JSON leaves to the reader: elements come in the order of
the StructureDefinition, repetition is not marked (a JSON array is a run of same-named XML
elements), a primitive's JSON type (boolean, number, string) is not visible in its `value`
attribute, and `Element.id`, `Extension.url` are attributes. All of that is in the
`fhir.resources` R4B models (which agree with R4 4.0.1 for the types we store): the element order
is `elements_sequence()`, the rest is each field's annotation. Reading it from them keeps this
converter free of per-type code, and in step with the models the structural validation uses.
"""

from __future__ import annotations

import decimal
import types
import typing
from dataclasses import dataclass
from functools import cache
from typing import Any

from fhir.resources.R4B import get_fhir_model_class

PRIMITIVE = "primitive"
COMPLEX = "complex"
RESOURCE = "resource"
XHTML = "xhtml"


@dataclass(frozen=True)
class ElementInfo:
    """One element of a type: its JSON name, what it holds, and whether it repeats.

    `json_type` is the JSON type of a primitive's value (bool, int, Decimal for any JSON number,
    str for the rest); `model` is the model of a complex element's type."""

    name: str
    kind: str
    many: bool
    json_type: type | None = None
    model: Any = None


@dataclass(frozen=True, eq=False)  # one per type (cached): identity is equality
class TypeInfo:
    """The elements of one type in their XML order, and how its `id` is written."""

    name: str
    elements: dict[str, ElementInfo]
    is_resource: bool
    is_extension: bool


def model_class(name: str) -> Any:
    """The model of a type by name (`Extension`, `BundleEntry`); KeyError when unknown."""
    model = _model(name)
    if model is None:
        raise KeyError(name)
    return model


@cache
def model_or_none(name: str) -> Any:
    """The fhir.resources R4B model of a type by name, or None when there is none (the XML
    converter and the base-specification primitive check read the same models)."""
    try:
        return get_fhir_model_class(name)
    except (KeyError, ValueError, AttributeError):
        return None


_model = model_or_none


@cache
def resource_info(resource_type: str) -> TypeInfo | None:
    """The type information of a resource type, or None when it is not an R4 resource."""
    model = _model(resource_type)
    resource = _model("Resource")
    if model is None or resource is None or not isinstance(model, type) \
            or not issubclass(model, resource):
        return None
    return type_info(model)


@cache
def type_info(model: Any) -> TypeInfo:
    """The type information of a model class (a resource, data type or backbone element)."""
    resource = _model("Resource")
    fields = {(f.alias or name): f for name, f in model.model_fields.items()}
    elements: dict[str, ElementInfo] = {}
    for name in model.elements_sequence():
        field = fields.get(name)
        if field is None:
            continue
        elements[name] = _element(name, field.annotation)
    return TypeInfo(model.__name__, elements, issubclass(model, resource),
                    model.__name__ == "Extension")


def _element(name: str, annotation: Any) -> ElementInfo:
    many = False
    for member in _members(annotation):
        if typing.get_origin(member) is list:
            many = True
    for member in _flat(annotation):
        if typing.get_origin(member) is typing.Annotated:
            base, *meta = typing.get_args(member)
            if any(type(m).__name__ == "Xhtml" for m in meta):
                return ElementInfo(name, XHTML, many)
            return ElementInfo(name, PRIMITIVE, many, _json_type(base))
        if member in (bool, int, decimal.Decimal, str):
            return ElementInfo(name, PRIMITIVE, many, _json_type(member))
        type_name = getattr(member, "__name__", "")
        if type_name == "ResourceType":
            return ElementInfo(name, RESOURCE, many)
        if type_name.endswith("Type") and type_name != "FHIRPrimitiveExtensionType":
            model = _model(type_name[: -len("Type")])
            if model is not None:
                return ElementInfo(name, COMPLEX, many, model=model)
    return ElementInfo(name, PRIMITIVE, many, str)


def _json_type(base: Any) -> type:
    if base is bool:
        return bool
    if base is int:
        return int
    if base is decimal.Decimal:
        return decimal.Decimal
    return str


def _members(annotation: Any) -> list[Any]:
    """The alternatives of an Optional/Union, one level (lists kept)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return [a for a in typing.get_args(annotation) if a is not type(None)]
    return [annotation]


def _flat(annotation: Any) -> list[Any]:
    """Every non-None alternative, lists unwrapped."""
    out: list[Any] = []
    for member in _members(annotation):
        if typing.get_origin(member) is list:
            for arg in typing.get_args(member):
                out.extend(_flat(arg))
        else:
            out.append(member)
    return out
