"""AuditEvents belong to the record they are about (their entity), never to a patient agent

Data only, no schema. Before this, an AuditEvent joined the compartment of every Patient it
named, the agent who asked included (the HL7 `patient` parameter), and one AuditEvent named
every patient a request touched; each of them read all of it (issue 12, L5 and O3). New
AuditEvents are one per patient and join that patient's record by `entity` only
(`CompartmentDefinition-patient`). For those already stored:

- membership by agent alone is removed: a patient who asked about someone else's record no
  longer reads that AuditEvent in their own trail;
- an AuditEvent that names several patients as entities cannot be split here without the
  application's indexer; it leaves every record and is labelled `medical` (the label the store
  gives data it cannot attribute), which makes it the operator's alone, as data with a
  data-category label and no patient is.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DATA_CATEGORY = "https://pgo-work.nl/fhir/CodeSystem/data-category"
AUDIT_EVENTS = "SELECT pk FROM resource WHERE resource_type = 'AuditEvent'"
SEVERAL_PATIENTS = (f"SELECT resource_pk FROM compartment WHERE resource_pk IN ({AUDIT_EVENTS}) "
                    "GROUP BY resource_pk HAVING COUNT(*) > 1")


def upgrade() -> None:
    op.execute(
        f"DELETE FROM compartment WHERE resource_pk IN ({AUDIT_EVENTS}) AND NOT EXISTS ("
        "SELECT 1 FROM idx_reference ref WHERE ref.resource_pk = compartment.resource_pk "
        "AND ref.param = 'AuditEvent.entity' AND ref.target_type = 'Patient' "
        "AND ref.target_id = compartment.patient_id)")
    op.execute(
        "INSERT INTO resource_label (resource_pk, system, code) "
        f"SELECT several.resource_pk, '{DATA_CATEGORY}', 'medical' FROM ({SEVERAL_PATIENTS}) "
        "several WHERE NOT EXISTS (SELECT 1 FROM resource_label l WHERE l.resource_pk = "
        f"several.resource_pk AND l.system = '{DATA_CATEGORY}' AND l.code = 'medical')")
    op.execute(f"DELETE FROM compartment WHERE resource_pk IN ({SEVERAL_PATIENTS})")


def downgrade() -> None:
    """Nothing to undo that should be undone: the removed memberships were the leak."""
