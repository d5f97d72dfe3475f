"""FHIR R4 XML <-> FHIR JSON (as parsed dicts), driven by the element metadata of the models.

The conversion follows the FHIR XML rules (R4 2.6.2 / 2.6.3): the root element names the
resource type in the `http://hl7.org/fhir` namespace; elements follow the definition order; a
JSON array is a run of same-named elements; a primitive is `<name value="..."/>` carrying its
`_name` (id, extension) as an `id` attribute and `extension` children; `Element.id` and
`Extension.url` are attributes; `Narrative.div` is literal XHTML; a resource inside a resource
(`contained`, `Bundle.entry.resource`, `Parameters.parameter.resource`) is wrapped in its
element. The type knowledge (order, repetition, JSON types) comes from `xml_schema`, not from
per-type code.

We convert dicts rather than going through `fhir.resources`' own `model_dump_xml`: that path
validates into pydantic objects first (lax coercion, dates and decimals re-typed), so what comes
back is not byte-for-byte what was stored, and it costs a model build per resource on every
answer. Decimals are written as their JSON number reads (Python's shortest round-trip form), so
JSON -> XML -> JSON gives back the same number.

Parsing is hardened: no DTD (refused before parsing and after), no entity expansion, no
network, no huge-tree mode; the caller bounds the size like a JSON body. A body that is not
well-formed or not FHIR XML raises `FhirError` 400 with the line (and column) of the problem.
"""

from __future__ import annotations

import re
from decimal import Decimal
from functools import cache
from typing import Any

from lxml import etree

from .outcome import FhirError, Issue
from .xml_schema import (
    COMPLEX,
    PRIMITIVE,
    RESOURCE,
    XHTML,
    ElementInfo,
    TypeInfo,
    model_class,
    resource_info,
    type_info,
)

FHIR_NS = "http://hl7.org/fhir"
XHTML_NS = "http://www.w3.org/1999/xhtml"
_F = "{" + FHIR_NS + "}"
_INTEGER = re.compile(r"^-?[0-9]+$")
_DECIMAL = re.compile(r"^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$")
_DOCTYPE = re.compile(rb"<!DOCTYPE", re.IGNORECASE)
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
"""Characters XML 1.0 cannot carry at all, not even as references (C0 controls, lone
surrogates, U+FFFE/U+FFFF)."""
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-.]*$")


def _parser() -> etree.XMLParser:
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                           dtd_validation=False, huge_tree=False, remove_comments=True,
                           remove_pis=True, collect_ids=False)


# -- JSON -> XML --------------------------------------------------------------------------------

def to_xml(resource: dict[str, Any], pretty: bool = False) -> bytes:
    """The XML form of a resource (UTF-8, with an XML declaration)."""
    root = _resource_element(resource)
    if pretty:
        _indent(root)
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))


def _indent(root: etree._Element) -> None:
    """Indent the FHIR elements two spaces; a narrative's XHTML is left exactly as written,
    since whitespace there is content."""
    divs = []
    for div in root.iter("{" + XHTML_NS + "}div"):
        if div.getparent() is not None and etree.QName(div.getparent()).namespace == FHIR_NS:
            divs.append((div, div.text, list(div)))
    for div, _, children in divs:
        div.text = None
        for child in children:
            div.remove(child)
    etree.indent(root, space="  ")
    for div, text, children in divs:
        div.text = text
        div.extend(children)


def _resource_element(resource: dict[str, Any]) -> etree._Element:
    rtype = str(resource.get("resourceType") or "")
    info = resource_info(rtype)
    root = etree.Element(_F + (rtype or "Resource"), nsmap={None: FHIR_NS})
    _fill(root, resource, info)
    return root


def _fill(el: etree._Element, node: dict[str, Any], info: TypeInfo | None) -> None:
    """Write the elements of `node` below `el`, in definition order (unknown names last, in
    their JSON order, so nothing stored is dropped)."""
    is_resource = info.is_resource if info is not None else "resourceType" in node
    if not is_resource and node.get("id") is not None:
        el.set("id", _text(node["id"]))
    if info is not None and info.is_extension and node.get("url") is not None:
        el.set("url", _text(node["url"]))
    known = info.elements if info is not None else {}
    present = _json_names(node)
    position = _positions(info) if info is not None else {}
    names = sorted((k for k in present if k in known), key=position.__getitem__)
    names += [k for k in present if k not in known and _NAME.match(k)]
    for name in names:
        if name == "id" and not is_resource:
            continue
        if name == "url" and info is not None and info.is_extension:
            continue
        spec = known.get(name) or _guess(name, node.get(name))
        _write(el, spec, node.get(name), node.get(f"_{name}"))


@cache
def _positions(info: TypeInfo) -> dict[str, int]:
    return {name: i for i, name in enumerate(info.elements)}


def _json_names(node: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for key in node:
        name = key[1:] if key.startswith("_") else key
        if name in ("resourceType", "fhir_comments") or name in out:
            continue
        out.append(name)
    return out


def _guess(name: str, value: Any) -> ElementInfo:
    """An element the models do not know: its shape decides (a resource, an object or a
    primitive), so it is still carried across."""
    first = value[0] if isinstance(value, list) and value else value
    if isinstance(first, dict):
        return ElementInfo(name, RESOURCE if "resourceType" in first else COMPLEX,
                           isinstance(value, list))
    return ElementInfo(name, PRIMITIVE, isinstance(value, list), str)


def _write(parent: etree._Element, spec: ElementInfo, value: Any, ext: Any) -> None:
    tag = _F + spec.name
    if spec.kind == PRIMITIVE:
        values = value if isinstance(value, list) else [value]
        exts = ext if isinstance(ext, list) else [ext]
        count = max(len(values), len(exts))
        for i in range(count):
            v = values[i] if i < len(values) else None
            x = exts[i] if i < len(exts) else None
            if v is None and not x:
                continue
            child = etree.SubElement(parent, tag)
            if isinstance(x, dict) and x.get("id") is not None:
                child.set("id", _text(x["id"]))
            if v is not None:
                child.set("value", _text(v))
            if isinstance(x, dict):
                for item in x.get("extension") or []:
                    sub = etree.SubElement(child, _F + "extension")
                    _fill(sub, item, _extension())
        return
    for item in value if isinstance(value, list) else [value]:
        if item is None:
            continue
        if spec.kind == XHTML:
            parent.append(_xhtml(str(item)))
        elif spec.kind == RESOURCE:
            wrapper = etree.SubElement(parent, tag)
            if isinstance(item, dict):
                wrapper.append(_resource_element(item))
        else:
            child = etree.SubElement(parent, tag)
            if isinstance(item, dict):
                _fill(child, item, type_info(spec.model) if spec.model is not None else None)


def _extension() -> TypeInfo:
    return type_info(model_class("Extension"))


def _text(value: Any) -> str:
    """A JSON primitive as its XML `value`. FHIR strings exclude the control characters XML
    cannot hold, but an OperationOutcome may echo them from a hostile request: they become
    U+FFFD rather than failing the answer."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        text = repr(value)
        return text.replace("e+", "e")
    return _NOT_XML.sub("\ufffd", str(value))


def _xhtml(div: str) -> etree._Element:
    """The narrative's XHTML as an element; a div that is not well-formed XML (the structural
    check refuses those on write) is carried as escaped text rather than failing the answer."""
    try:
        el = etree.fromstring(div.encode(), _parser())
    except etree.XMLSyntaxError:
        el = None
    if el is None or el.tag != "{" + XHTML_NS + "}div":
        el = etree.Element("{" + XHTML_NS + "}div", nsmap={None: XHTML_NS})
        el.text = _NOT_XML.sub("\ufffd", div)
    return el


# -- XML -> JSON --------------------------------------------------------------------------------

def from_xml(raw: bytes) -> dict[str, Any]:
    """The FHIR JSON (as a dict) of an XML resource; FhirError 400 naming the line and column
    of whatever is not well-formed or not FHIR XML."""
    if _DOCTYPE.search(raw):
        raise _error("XML with a DOCTYPE is not accepted (FHIR XML has no DTD)", 1, 1)
    try:
        root = etree.fromstring(raw, _parser())
    except etree.XMLSyntaxError as exc:
        line, column = exc.position
        raise _error(f"The body is not well-formed XML: {exc.msg}", line, column) from exc
    if root.getroottree().docinfo.doctype:
        raise _error("XML with a DOCTYPE is not accepted (FHIR XML has no DTD)", 1, 1)
    return _resource_json(root, "")


def _error(text: str, line: int | None, column: int | None = None, path: str = "") -> FhirError:
    where = f"line {line}" + (f", column {column}" if column else "") if line else ""
    location = f"Line[{line}]" + (f" Col[{column}]" if column else "") if line else ""
    issue = Issue("structure", f"{text} ({where})" if where else text,
                  expression=[path] if path else [])
    if location:
        issue.location = [location]
    return FhirError(400, "structure", issue.diagnostics, issues=[issue])


def _local(el: etree._Element, path: str) -> str:
    qname = etree.QName(el)
    if qname.namespace != FHIR_NS:
        raise _error(f"Element '{qname.localname}' is not in the FHIR namespace ({FHIR_NS})",
                     el.sourceline, path=path)
    return str(qname.localname)


def _resource_json(el: etree._Element, path: str) -> dict[str, Any]:
    rtype = _local(el, path)
    info = resource_info(rtype)
    if info is None:
        raise _error(f"'{rtype}' is not a FHIR R4 resource type", el.sourceline, path=path)
    out: dict[str, Any] = {"resourceType": rtype}
    _read(el, info, out, path or rtype)
    return out


def _read(el: etree._Element, info: TypeInfo, out: dict[str, Any], path: str) -> None:
    for attr, value in el.attrib.items():
        name = str(attr)
        if name.startswith("{"):
            continue  # xsi:schemaLocation and the like: not content
        if name == "id" and not info.is_resource:
            out["id"] = value
        elif name == "url" and info.is_extension:
            out["url"] = value
        else:
            raise _error(f"Unexpected attribute '{name}' on {path}", el.sourceline, path=path)
    _no_text(el, path)
    order = _positions(info)
    last = -1
    for child in el:
        if not isinstance(child.tag, str):
            continue
        if info.elements.get("div") is not None and child.tag == "{" + XHTML_NS + "}div":
            out["div"] = etree.tostring(child, encoding="unicode", with_tail=False)
            continue
        name = _local(child, path)
        spec = info.elements.get(name)
        if spec is None or (name == "id" and not info.is_resource) or \
                (name == "url" and info.is_extension):
            raise _error(f"Unknown element '{name}' in {path}", child.sourceline,
                         path=f"{path}.{name}")
        index = order[name]
        if index < last:
            raise _error(f"Element '{name}' is out of order in {path}", child.sourceline,
                         path=f"{path}.{name}")
        last = index
        _read_child(child, spec, out, f"{path}.{name}")
    for name in list(out):
        if isinstance(out[name], list) and name.startswith("_") and \
                all(x is None for x in out[name]):
            del out[name]


def _read_child(child: etree._Element, spec: ElementInfo, out: dict[str, Any],
                path: str) -> None:
    name = spec.name
    if not spec.many and (name in out or f"_{name}" in out):
        raise _error(f"Element '{name}' repeats but may occur only once", child.sourceline,
                     path=path)
    here = f"{path}[{len(out.get(name, []))}]" if spec.many else path
    if spec.kind == PRIMITIVE:
        value, ext = _primitive(child, spec, here)
        if spec.many:
            values = out.setdefault(name, [])
            exts = out.setdefault(f"_{name}", [])
            exts.extend([None] * (len(values) - len(exts)))
            values.append(value)
            exts.append(ext)
            if not exts or all(x is None for x in exts):
                out.pop(f"_{name}", None)
        else:
            if value is not None:
                out[name] = value
            if ext is not None:
                out[f"_{name}"] = ext
        return
    if spec.kind == RESOURCE:
        _no_text(child, here)
        inner = [c for c in child if isinstance(c.tag, str)]
        if len(inner) != 1 or child.attrib:
            raise _error(f"'{name}' must hold exactly one resource", child.sourceline, path=here)
        item: Any = _resource_json(inner[0], here)
    elif spec.kind == XHTML:
        item = etree.tostring(child, encoding="unicode", with_tail=False)
    else:
        item = {}
        _read(child, type_info(spec.model), item, here)
        if not item:
            raise _error(f"Element '{name}' is empty", child.sourceline, path=here)
    if spec.many:
        out.setdefault(name, []).append(item)
    else:
        out[name] = item


def _primitive(el: etree._Element, spec: ElementInfo, path: str) -> tuple[Any, Any]:
    """(JSON value, the `_name` object or None) of a primitive element."""
    ext: dict[str, Any] = {}
    value: Any = None
    for attr, text in el.attrib.items():
        name = str(attr)
        if name.startswith("{"):
            continue
        if name == "id":
            ext["id"] = text
        elif name == "value":
            value = _typed(text, spec, el, path)
        else:
            raise _error(f"Unexpected attribute '{name}' on {path}", el.sourceline, path=path)
    _no_text(el, path)
    extensions: list[dict[str, Any]] = []
    for child in el:
        if not isinstance(child.tag, str):
            continue
        if _local(child, path) != "extension":
            raise _error(f"A primitive element holds only extensions, not "
                         f"'{etree.QName(child).localname}'", child.sourceline, path=path)
        item: dict[str, Any] = {}
        _read(child, _extension(), item, f"{path}.extension[{len(extensions)}]")
        extensions.append(item)
    if extensions:
        ext["extension"] = extensions
    if value is None and not ext:
        raise _error(f"Element '{spec.name}' has neither a value nor extensions",
                     el.sourceline, path=path)
    return value, (ext or None)


def _typed(text: str, spec: ElementInfo, el: etree._Element, path: str) -> Any:
    kind = spec.json_type
    if kind is bool:
        if text not in ("true", "false"):
            raise _error(f"'{text}' is not a boolean (true or false)", el.sourceline, path=path)
        return text == "true"
    if kind is int:
        if not _INTEGER.match(text):
            raise _error(f"'{text}' is not an integer", el.sourceline, path=path)
        return int(text)
    if kind is Decimal:
        if not _DECIMAL.match(text):
            raise _error(f"'{text}' is not a decimal", el.sourceline, path=path)
        return int(text) if _INTEGER.match(text) else float(text)
    return text


def _no_text(el: etree._Element, path: str) -> None:
    if (el.text or "").strip() or any((c.tail or "").strip() for c in el):
        raise _error(f"Text content is not allowed in {path} (FHIR XML uses value attributes)",
                     el.sourceline, path=path)
