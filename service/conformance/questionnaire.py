"""QuestionnaireResponse validation against its Questionnaire (R4 Questionnaire semantics).

Checked: unknown or misplaced linkIds, answer types per item type, allowed options
(answerOption, answerValueSet through our terminology, unitOption for quantities), maxLength,
repeats, enableWhen (a disabled item must not be answered) and required items.

Decisions: a response `completed` or `amended` must be complete (required items); `in-progress`
and `stopped` are checked for everything except required items, so a half-filled form can be
saved; `entered-in-error` is not checked at all (it retracts, it does not assert). The `!=`
operator of enableWhen holds when the question has an answer and none equals the value (an
unanswered question enables nothing). An answerValueSet we do not know is not checked.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ..fhir.outcome import Issue
from .terminology import Terminology

ANSWER_TYPES: dict[str, tuple[str, ...]] = {
    "boolean": ("valueBoolean",), "decimal": ("valueDecimal",), "integer": ("valueInteger",),
    "date": ("valueDate",), "dateTime": ("valueDateTime",), "time": ("valueTime",),
    "string": ("valueString",), "text": ("valueString",), "url": ("valueUri",),
    "choice": ("valueCoding",), "open-choice": ("valueCoding", "valueString"),
    "attachment": ("valueAttachment",), "reference": ("valueReference",),
    "quantity": ("valueQuantity",),
}
UNIT_OPTION = "http://hl7.org/fhir/StructureDefinition/questionnaire-unitOption"
COMPLETE = frozenset({"completed", "amended"})
UNCHECKED = frozenset({"entered-in-error"})


def all_items(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for item in items:
        yield item
        yield from all_items(item.get("item", []))


def option_value(option: dict[str, Any]) -> Any:
    """The value[x] of an answerOption."""
    return next((v for k, v in option.items() if k.startswith("value")), None)


def _comparable(value: Any) -> Any:
    """What `=` compares: system and code of a Coding, value and unit of a Quantity."""
    if isinstance(value, dict):
        if "code" in value and "value" not in value:
            return ("coding", value.get("system"), value.get("code"))
        if "value" in value:
            return ("quantity", value.get("value"), value.get("code") or value.get("unit"))
        if "reference" in value:
            return ("reference", value.get("reference"))
    return value


@dataclass
class _Context:
    answers: dict[str, list[Any]]
    check_required: bool


class QuestionnaireValidator:
    def __init__(self, terminology: Terminology) -> None:
        self.terminology = terminology

    def validate(self, response: dict[str, Any], questionnaire: dict[str, Any]) -> list[Issue]:
        status = response.get("status")
        if status in UNCHECKED:
            return []
        answers: dict[str, list[Any]] = {}
        _collect(response.get("item") or [], answers)
        ctx = _Context(answers, status in COMPLETE)
        return self._items(questionnaire.get("item", []), response.get("item") or [],
                           "QuestionnaireResponse", ctx, _link_ids(questionnaire))

    # -- enableWhen -------------------------------------------------------------------------
    def enabled(self, item: dict[str, Any], answers: dict[str, list[Any]]) -> bool:
        conditions = item.get("enableWhen") or []
        if not conditions:
            return True
        results = [self._holds(c, answers) for c in conditions]
        return any(results) if item.get("enableBehavior") == "any" else all(results)

    @staticmethod
    def _holds(condition: dict[str, Any], answers: dict[str, list[Any]]) -> bool:
        given = answers.get(condition.get("question", ""), [])
        op = condition.get("operator")
        target = next((v for k, v in condition.items() if k.startswith("answer")), None)
        if op == "exists":
            return bool(given) == bool(target)
        want = _comparable(target)
        values = [_comparable(v) for v in given]
        if op == "=":
            return want in values
        if op == "!=":
            return bool(values) and want not in values
        try:
            if op == ">":
                return any(v > want for v in values)
            if op == "<":
                return any(v < want for v in values)
            if op == ">=":
                return any(v >= want for v in values)
            if op == "<=":
                return any(v <= want for v in values)
        except TypeError:
            return False
        return False

    # -- items ------------------------------------------------------------------------------
    def _items(self, qitems: list[dict[str, Any]], ritems: list[Any], path: str,
               ctx: _Context, known: frozenset[str]) -> list[Issue]:
        by_link = {q.get("linkId"): q for q in qitems}
        seen: dict[str, int] = {}
        issues: list[Issue] = []
        for i, ritem in enumerate(ritems):
            where = f"{path}.item[{i}]"
            link = ritem.get("linkId") if isinstance(ritem, dict) else None
            q = by_link.get(link)
            if q is None:
                why = "is not expected here" if link in known else "is not in the Questionnaire"
                issues.append(Issue("structure", f"{where}: linkId '{link}' {why}", expression=[where]))
                continue
            seen[q["linkId"]] = seen.get(q["linkId"], 0) + 1
            if seen[q["linkId"]] > 1 and not q.get("repeats"):
                issues.append(Issue("structure", f"{where}: item '{link}' does not repeat",
                                    expression=[where]))
            if not self.enabled(q, ctx.answers):
                issues.append(Issue("business-rule", f"{where}: item '{link}' is answered but "
                                    "disabled by its enableWhen", expression=[where]))
                continue
            issues += self._item(q, ritem, where, ctx, known)
        if ctx.check_required:
            issues += self._required(qitems, ritems, path, ctx)
        return issues

    def _item(self, q: dict[str, Any], ritem: dict[str, Any], where: str, ctx: _Context,
              known: frozenset[str]) -> list[Issue]:
        kind, link = q.get("type"), q.get("linkId")
        answers = ritem.get("answer") or []
        issues: list[Issue] = []
        if kind in ("group", "display") and answers:
            issues.append(Issue("structure", f"{where}: a {kind} item has no answers",
                                expression=[where]))
        if kind == "group":
            return issues + self._items(q.get("item", []), ritem.get("item") or [], where, ctx, known)
        if kind == "display":
            return issues
        if len(answers) > 1 and not q.get("repeats"):
            issues.append(Issue("structure", f"{where}: item '{link}' does not repeat: only one "
                                "answer is allowed", expression=[where]))
        for j, answer in enumerate(answers):
            apath = f"{where}.answer[{j}]"
            issues += self._answer(q, answer, apath)
            if isinstance(answer, dict) and answer.get("item"):
                issues += self._items(q.get("item", []), answer["item"], apath, ctx, known)
        if ritem.get("item"):
            issues += self._items(q.get("item", []), ritem["item"], where, ctx, known)
        return issues

    def _required(self, qitems: list[dict[str, Any]], ritems: list[Any], path: str,
                  ctx: _Context) -> list[Issue]:
        issues = []
        for q in qitems:
            if not q.get("required") or q.get("type") == "display" or not self.enabled(q, ctx.answers):
                continue
            present = any(isinstance(r, dict) and r.get("linkId") == q.get("linkId")
                          and (q.get("type") == "group" or r.get("answer")) for r in ritems)
            if not present:
                issues.append(Issue("required", f"{path}: required item '{q.get('linkId')}' is "
                                    "missing", expression=[path]))
        return issues

    # -- answers ----------------------------------------------------------------------------
    def _answer(self, q: dict[str, Any], answer: Any, apath: str) -> list[Issue]:
        kind, link = str(q.get("type")), q.get("linkId")
        keys = [k for k in answer if k.startswith("value")] if isinstance(answer, dict) else []
        if len(keys) != 1:
            return [Issue("structure", f"{apath}: an answer holds exactly one value[x]",
                          expression=[apath])]
        key, value = keys[0], answer[keys[0]]
        allowed = _allowed_answers(q)
        if key not in allowed:
            return [Issue("structure", f"{apath}: item '{link}' is of type {kind}: the answer "
                          f"must be {' or '.join(allowed) or 'absent'}, not {key}",
                          expression=[apath])]
        if key == "valueCoding":
            return self._coding_option(q, value, apath)
        free_text = kind == "open-choice" and key == "valueString"
        if q.get("answerOption") and not free_text \
                and all(option_value(o) != value for o in q["answerOption"]):
            return [Issue("code-invalid", f"{apath}: {value!r} is not an answerOption of "
                          f"'{link}'", expression=[apath])]
        if key == "valueQuantity":
            return self._unit(q, value, apath)
        if key == "valueString" and isinstance(q.get("maxLength"), int) \
                and len(str(value)) > q["maxLength"]:
            return [Issue("value", f"{apath}: longer than maxLength {q['maxLength']}",
                          expression=[apath])]
        return []

    def _coding_option(self, q: dict[str, Any], coding: Any, apath: str) -> list[Issue]:
        if not isinstance(coding, dict):
            return [Issue("structure", f"{apath}: valueCoding must be a Coding", expression=[apath])]
        system, code = coding.get("system"), coding.get("code")
        link = q.get("linkId")
        if q.get("answerOption"):
            for option in q["answerOption"]:
                oc = option.get("valueCoding")
                if isinstance(oc, dict) and oc.get("code") == code and (
                        oc.get("system") is None or oc.get("system") == system):
                    return []
            return [Issue("code-invalid", f"{apath}: {system or ''}|{code} is not an answerOption "
                          f"of '{link}'", expression=[apath])]
        if q.get("answerValueSet"):
            exp = self.terminology.expand(q["answerValueSet"])
            if exp is None:
                return []
            check = self.terminology.validate_in(exp, system, code)
            if not check.result:
                return [Issue("code-invalid", f"{apath}: {system or ''}|{code} is not in ValueSet "
                              f"{q['answerValueSet']} ({check.message})", expression=[apath])]
        return []

    @staticmethod
    def _unit(q: dict[str, Any], quantity: Any, apath: str) -> list[Issue]:
        units = [e.get("valueCoding") for e in q.get("extension", [])
                 if e.get("url") == UNIT_OPTION and isinstance(e.get("valueCoding"), dict)]
        if not units or not isinstance(quantity, dict):
            return []
        if any(u.get("code") == quantity.get("code") and u.get("system") == quantity.get("system")
               for u in units):
            return []
        allowed = ", ".join(f"{u.get('system')}|{u.get('code')}" for u in units)
        return [Issue("value", f"{apath}: the unit must be one of {allowed}", expression=[apath])]


def _allowed_answers(q: dict[str, Any]) -> tuple[str, ...]:
    """The answer value[x] keys an item takes; a choice answers with its options' type (R4
    answerOption may be integer, date, time, string or Coding), an open-choice also with text."""
    kind = str(q.get("type"))
    options = q.get("answerOption") or []
    if kind in ("choice", "open-choice") and options:
        keys = tuple(dict.fromkeys(k for o in options for k in o if k.startswith("value")))
        return keys + (("valueString",) if kind == "open-choice" and "valueString" not in keys else ())
    return ANSWER_TYPES.get(kind, ())


def _collect(items: list[Any], out: dict[str, list[Any]]) -> None:
    """Every answer value by linkId, wherever it is nested (enableWhen looks them up)."""
    for item in items:
        if not isinstance(item, dict):
            continue
        for answer in item.get("answer") or []:
            if isinstance(answer, dict):
                found = next(((k, v) for k, v in answer.items() if k.startswith("value")), None)
                if found:
                    out.setdefault(str(item.get("linkId")), []).append(found[1])
                _collect(answer.get("item") or [], out)
        _collect(item.get("item") or [], out)


def _link_ids(questionnaire: dict[str, Any]) -> frozenset[str]:
    return frozenset(str(i.get("linkId")) for i in all_items(questionnaire.get("item", [])))
