"""The typed form of a FHIR search, independent of HTTP and of SQL."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..searchparams import SearchParam


@dataclass
class Criterion:
    """One parameter occurrence: its values are ORed (commas), occurrences are ANDed."""

    name: str
    param: SearchParam | None
    modifier: str | None
    values: list[str]
    chain: Chain | None = None
    has: Has | None = None


@dataclass
class Chain:
    """`subject.name=x`: a reference parameter and, per target type, the nested criterion.

    Parameters are defined per type (Practitioner.name is not Organization.name), so a chain
    over several target types holds one nested criterion for each; a target matching any of
    them matches.
    """

    reference: SearchParam
    targets: dict[str, Criterion]


@dataclass
class Has:
    """`_has:Observation:patient:code=x`: resources of `source_type` pointing at us via `reference`."""

    source_type: str
    reference: SearchParam
    criterion: Criterion


@dataclass
class SortKey:
    name: str
    param: SearchParam | None
    descending: bool


@dataclass
class IncludeSpec:
    source_type: str
    param: SearchParam | None  # None means every reference parameter of source_type ("*")
    target_type: str | None
    iterate: bool = False
    reverse: bool = False


@dataclass
class SearchRequest:
    resource_type: str | None
    criteria: list[Criterion] = field(default_factory=list)
    sort: list[SortKey] = field(default_factory=list)
    count: int = 20
    cursor: str | None = None
    total: str = "accurate"
    summary: str | None = None
    elements: list[str] | None = None
    include: list[IncludeSpec] = field(default_factory=list)
    revinclude: list[IncludeSpec] = field(default_factory=list)
    ignored: list[tuple[str, str]] = field(default_factory=list)
    """(parameter, reason) not used (unknown, or malformed under `Prefer: handling=lenient`);
    not in the self link."""
    types: list[str] = field(default_factory=list)
    """System search over several types (`_type=A,B`): only these types."""
    compartment: str | None = None
    """Compartment search (`Patient/x/Observation`): only resources in this patient's
    compartment."""
    records: list[str] | None = None
    """Only resources in the record of one of these patients (a Group's members)."""
    any_record: bool = False
    """Only resources in some patient's record (a patient-level export)."""
    echo: list[tuple[str, str]] = field(default_factory=list)
    """The parameters the server used, in order, for the Bundle's self link."""
