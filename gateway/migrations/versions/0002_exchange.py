"""exchange: cases, subjects, consents, documents, referrals, timelines, outbox, inbox, dead letters

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 07:23:14.492690
"""

from __future__ import annotations

from collections.abc import Sequence

import advanced_alchemy.types
import sqlalchemy as sa
from alembic import op

from tenants.persistence import rls_policy_sql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "dead_letter",
        sa.Column("id", advanced_alchemy.types.guid.GUID(length=16), nullable=False),
        sa.Column("envelope_id", advanced_alchemy.types.guid.GUID(length=16), nullable=True),
        sa.Column("subject", sa.String(length=128), nullable=False),
        sa.Column("recipient_tenant_id", advanced_alchemy.types.guid.GUID(length=16), nullable=True),
        sa.Column("sender_tenant_id", advanced_alchemy.types.guid.GUID(length=16), nullable=True),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("detail", sa.String(length=255), nullable=False),
        sa.Column("token", sa.Text(), nullable=False),
        sa.Column("received_at", advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=False),
        sa.Column("sa_orm_sentinel", sa.Integer(), nullable=True),
        sa.Column("created_at", advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=False),
        sa.Column("updated_at", advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dead_letter")),
    )
    with op.batch_alter_table("dead_letter", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_dead_letter_envelope_id"), ["envelope_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_dead_letter_recipient_tenant_id"), ["recipient_tenant_id"], unique=False)

    op.create_table(
        "inbox_envelope",
        sa.Column("id", advanced_alchemy.types.guid.GUID(length=16), nullable=False),
        sa.Column("envelope_id", advanced_alchemy.types.guid.GUID(length=16), nullable=False),
        sa.Column("envelope_type", sa.String(length=32), nullable=False),
        sa.Column("sender_tenant_id", advanced_alchemy.types.guid.GUID(length=16), nullable=False),
        sa.Column("applied_at", advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=False),
        sa.Column("tenant_id", advanced_alchemy.types.guid.GUID(length=16), nullable=False),
        sa.Column("sa_orm_sentinel", sa.Integer(), nullable=True),
        sa.Column("created_at", advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=False),
        sa.Column("updated_at", advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenant.id"], name=op.f("fk_inbox_envelope_tenant_id_tenant"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inbox_envelope")),
        sa.UniqueConstraint("envelope_id", name=op.f("uq_inbox_envelope_envelope_id")),
    )
    with op.batch_alter_table("inbox_envelope", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_inbox_envelope_tenant_id"), ["tenant_id"], unique=False)

    op.create_table(
        "outbox_envelope",
        sa.Column("id", advanced_alchemy.types.guid.GUID(length=16), nullable=False),
        sa.Column("envelope_id", advanced_alchemy.types.guid.GUID(length=16), nullable=False),
        sa.Column("envelope_type", sa.String(length=32), nullable=False),
        sa.Column("recipient_tenant_id", advanced_alchemy.types.guid.GUID(length=16), nullable=False),
        sa.Column("exchange_id", advanced_alchemy.types.guid.GUID(length=16), nullable=True),
        sa.Column("subject", sa.String(length=128), nullable=False),
        sa.Column("token", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=False),
        sa.Column("sent_at", advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=True),
        sa.Column("delivered_at", advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(length=255), nullable=True),
        sa.Column("tenant_id", advanced_alchemy.types.guid.GUID(length=16), nullable=False),
        sa.Column("sa_orm_sentinel", sa.Integer(), nullable=True),
        sa.Column("created_at", advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=False),
        sa.Column("updated_at", advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenant.id"], name=op.f("fk_outbox_envelope_tenant_id_tenant"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox_envelope")),
        sa.UniqueConstraint("envelope_id", name=op.f("uq_outbox_envelope_envelope_id")),
    )
    with op.batch_alter_table("outbox_envelope", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_outbox_envelope_next_attempt_at"), ["next_attempt_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_outbox_envelope_sent_at"), ["sent_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_outbox_envelope_tenant_id"), ["tenant_id"], unique=False)

    op.create_table(
        "case_file",
        sa.Column("id", advanced_alchemy.types.guid.GUID(length=16), nullable=False),
        sa.Column("reference", sa.String(length=32), nullable=False),
        sa.Column("key_worker_id", advanced_alchemy.types.guid.GUID(length=16), nullable=True),
        sa.Column("created_by_kind", sa.String(length=8), nullable=False),
        sa.Column("created_by_id", advanced_alchemy.types.guid.GUID(length=16), nullable=False),
        sa.Column("kek_kid", sa.String(length=64), nullable=False),
        sa.Column("data_key_wrapped", sa.LargeBinary(), nullable=True),
        sa.Column("sealed", sa.LargeBinary(), nullable=True),
        sa.Column("tenant_id", advanced_alchemy.types.guid.GUID(length=16), nullable=False),
        sa.Column("sa_orm_sentinel", sa.Integer(), nullable=True),
        sa.Column("created_at", advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=False),
        sa.Column("updated_at", advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["key_worker_id"], ["user_account.id"], name=op.f("fk_case_file_key_worker_id_user_account")
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenant.id"], name=op.f("fk_case_file_tenant_id_tenant"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_case_file")),
        sa.UniqueConstraint("tenant_id", "reference", name=op.f("uq_case_file_tenant_id")),
    )
    with op.batch_alter_table("case_file", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_case_file_tenant_id"), ["tenant_id"], unique=False)

    op.create_table(
        "case_subject",
        sa.Column("id", advanced_alchemy.types.guid.GUID(length=16), nullable=False),
        sa.Column("case_id", advanced_alchemy.types.guid.GUID(length=16), nullable=False),
        sa.Column("ref", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("erased_at", advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=True),
        sa.Column("kek_kid", sa.String(length=64), nullable=False),
        sa.Column("data_key_wrapped", sa.LargeBinary(), nullable=True),
        sa.Column("sealed", sa.LargeBinary(), nullable=True),
        sa.Column("tenant_id", advanced_alchemy.types.guid.GUID(length=16), nullable=False),
        sa.Column("sa_orm_sentinel", sa.Integer(), nullable=True),
        sa.Column("created_at", advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=False),
        sa.Column("updated_at", advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["case_id"], ["case_file.id"], name=op.f("fk_case_subject_case_id_case_file"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenant.id"], name=op.f("fk_case_subject_tenant_id_tenant"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_case_subject")),
        sa.UniqueConstraint("case_id", "ref", name=op.f("uq_case_subject_case_id")),
    )
    with op.batch_alter_table("case_subject", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_case_subject_case_id"), ["case_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_case_subject_tenant_id"), ["tenant_id"], unique=False)

    op.create_table(
        "referral",
        sa.Column("id", advanced_alchemy.types.guid.GUID(length=16), nullable=False),
        sa.Column("exchange_id", advanced_alchemy.types.guid.GUID(length=16), nullable=False),
        sa.Column("side", sa.String(length=16), nullable=False),
        sa.Column("from_tenant_id", advanced_alchemy.types.guid.GUID(length=16), nullable=False),
        sa.Column("to_tenant_id", advanced_alchemy.types.guid.GUID(length=16), nullable=False),
        sa.Column("case_id", advanced_alchemy.types.guid.GUID(length=16), nullable=True),
        sa.Column("case_ref", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("purpose", sa.String(length=64), nullable=False),
        sa.Column("urgency", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("respond_by", advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=False),
        sa.Column("complete_by", advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=False),
        sa.Column("categories", sa.JSON(), nullable=False),
        sa.Column("subject_ids", sa.JSON(), nullable=False),
        sa.Column("consent_ids", sa.JSON(), nullable=False),
        sa.Column("legal_basis", sa.String(length=16), nullable=False),
        sa.Column("statutory_reference", sa.String(length=300), nullable=True),
        sa.Column("review_required", sa.Boolean(), nullable=False),
        sa.Column("outcome_result", sa.String(length=32), nullable=True),
        sa.Column("recipient_basis_reference", sa.String(length=300), nullable=True),
        sa.Column("consent_withdrawn_at", advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=True),
        sa.Column("restricted", sa.Boolean(), nullable=False),
        sa.Column("assignee_id", advanced_alchemy.types.guid.GUID(length=16), nullable=True),
        sa.Column("idempotency_key", sa.String(length=255), nullable=True),
        sa.Column("request_hash", sa.String(length=64), nullable=True),
        sa.Column("kek_kid", sa.String(length=64), nullable=False),
        sa.Column("data_key_wrapped", sa.LargeBinary(), nullable=True),
        sa.Column("sealed", sa.LargeBinary(), nullable=True),
        sa.Column("tenant_id", advanced_alchemy.types.guid.GUID(length=16), nullable=False),
        sa.Column("sa_orm_sentinel", sa.Integer(), nullable=True),
        sa.Column("created_at", advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=False),
        sa.Column("updated_at", advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["assignee_id"], ["user_account.id"], name=op.f("fk_referral_assignee_id_user_account")
        ),
        sa.ForeignKeyConstraint(["case_id"], ["case_file.id"], name=op.f("fk_referral_case_id_case_file")),
        sa.ForeignKeyConstraint(["from_tenant_id"], ["tenant.id"], name=op.f("fk_referral_from_tenant_id_tenant")),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenant.id"], name=op.f("fk_referral_tenant_id_tenant"), ondelete="RESTRICT"
        ),
        sa.ForeignKeyConstraint(["to_tenant_id"], ["tenant.id"], name=op.f("fk_referral_to_tenant_id_tenant")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_referral")),
        sa.UniqueConstraint("tenant_id", "exchange_id", name="uq_referral_exchange_id"),
        sa.UniqueConstraint("tenant_id", "idempotency_key", name="uq_referral_idempotency_key"),
    )
    with op.batch_alter_table("referral", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_referral_exchange_id"), ["exchange_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_referral_status"), ["status"], unique=False)
        batch_op.create_index(batch_op.f("ix_referral_tenant_id"), ["tenant_id"], unique=False)

    op.create_table(
        "document",
        sa.Column("id", advanced_alchemy.types.guid.GUID(length=16), nullable=False),
        sa.Column("media_type", sa.String(length=127), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.Column("case_id", advanced_alchemy.types.guid.GUID(length=16), nullable=True),
        sa.Column("referral_id", advanced_alchemy.types.guid.GUID(length=16), nullable=True),
        sa.Column("kek_kid", sa.String(length=64), nullable=False),
        sa.Column("data_key_wrapped", sa.LargeBinary(), nullable=True),
        sa.Column("sealed", sa.LargeBinary(), nullable=True),
        sa.Column("tenant_id", advanced_alchemy.types.guid.GUID(length=16), nullable=False),
        sa.Column("sa_orm_sentinel", sa.Integer(), nullable=True),
        sa.Column("created_at", advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=False),
        sa.Column("updated_at", advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["case_id"], ["case_file.id"], name=op.f("fk_document_case_id_case_file"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["referral_id"], ["referral.id"], name=op.f("fk_document_referral_id_referral"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenant.id"], name=op.f("fk_document_tenant_id_tenant"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_document")),
    )
    with op.batch_alter_table("document", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_document_tenant_id"), ["tenant_id"], unique=False)

    op.create_table(
        "referral_message",
        sa.Column("id", advanced_alchemy.types.guid.GUID(length=16), nullable=False),
        sa.Column("referral_id", advanced_alchemy.types.guid.GUID(length=16), nullable=False),
        sa.Column("message_id", advanced_alchemy.types.guid.GUID(length=16), nullable=False),
        sa.Column("author_tenant_id", advanced_alchemy.types.guid.GUID(length=16), nullable=False),
        sa.Column("at", advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=False),
        sa.Column("body_sealed", sa.LargeBinary(), nullable=False),
        sa.Column("attachment_ids", sa.JSON(), nullable=False),
        sa.Column("tenant_id", advanced_alchemy.types.guid.GUID(length=16), nullable=False),
        sa.Column("sa_orm_sentinel", sa.Integer(), nullable=True),
        sa.Column("created_at", advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=False),
        sa.Column("updated_at", advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["referral_id"], ["referral.id"], name=op.f("fk_referral_message_referral_id_referral"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenant.id"], name=op.f("fk_referral_message_tenant_id_tenant"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_referral_message")),
        sa.UniqueConstraint("tenant_id", "message_id", name=op.f("uq_referral_message_tenant_id")),
    )
    with op.batch_alter_table("referral_message", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_referral_message_referral_id"), ["referral_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_referral_message_tenant_id"), ["tenant_id"], unique=False)

    op.create_table(
        "referral_timeline",
        sa.Column("id", advanced_alchemy.types.guid.GUID(length=16), nullable=False),
        sa.Column("referral_id", advanced_alchemy.types.guid.GUID(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("at", advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=False),
        sa.Column("by_tenant_id", advanced_alchemy.types.guid.GUID(length=16), nullable=False),
        sa.Column("note_sealed", sa.LargeBinary(), nullable=True),
        sa.Column("tenant_id", advanced_alchemy.types.guid.GUID(length=16), nullable=False),
        sa.Column("sa_orm_sentinel", sa.Integer(), nullable=True),
        sa.Column("created_at", advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=False),
        sa.Column("updated_at", advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["referral_id"], ["referral.id"], name=op.f("fk_referral_timeline_referral_id_referral"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenant.id"], name=op.f("fk_referral_timeline_tenant_id_tenant"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_referral_timeline")),
    )
    with op.batch_alter_table("referral_timeline", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_referral_timeline_referral_id"), ["referral_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_referral_timeline_tenant_id"), ["tenant_id"], unique=False)

    op.create_table(
        "consent",
        sa.Column("id", advanced_alchemy.types.guid.GUID(length=16), nullable=False),
        sa.Column("case_id", advanced_alchemy.types.guid.GUID(length=16), nullable=False),
        sa.Column("subject_id", advanced_alchemy.types.guid.GUID(length=16), nullable=False),
        sa.Column("relation", sa.String(length=16), nullable=False),
        sa.Column("given_by_sealed", sa.LargeBinary(), nullable=False),
        sa.Column("purposes", sa.JSON(), nullable=False),
        sa.Column("categories", sa.JSON(), nullable=False),
        sa.Column("recipient_tenants", sa.JSON(), nullable=False),
        sa.Column("recipient_kinds", sa.JSON(), nullable=False),
        sa.Column("valid_from", advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=False),
        sa.Column("valid_until", advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=True),
        sa.Column("evidence_document_id", advanced_alchemy.types.guid.GUID(length=16), nullable=True),
        sa.Column("evidence_sha256", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("withdrawn_at", advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=True),
        sa.Column("withdrawal_reason_sealed", sa.LargeBinary(), nullable=True),
        sa.Column("tenant_id", advanced_alchemy.types.guid.GUID(length=16), nullable=False),
        sa.Column("sa_orm_sentinel", sa.Integer(), nullable=True),
        sa.Column("created_at", advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=False),
        sa.Column("updated_at", advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["case_id"], ["case_file.id"], name=op.f("fk_consent_case_id_case_file"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["evidence_document_id"], ["document.id"], name=op.f("fk_consent_evidence_document_id_document")
        ),
        sa.ForeignKeyConstraint(
            ["subject_id"], ["case_subject.id"], name=op.f("fk_consent_subject_id_case_subject"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenant.id"], name=op.f("fk_consent_tenant_id_tenant"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_consent")),
    )
    with op.batch_alter_table("consent", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_consent_case_id"), ["case_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_consent_subject_id"), ["subject_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_consent_tenant_id"), ["tenant_id"], unique=False)

    if op.get_bind().dialect.name == "postgresql":
        for table in (  # as they are at this revision; later tables get their policies in their own migration
            "case_file",
            "case_subject",
            "consent",
            "document",
            "referral",
            "referral_timeline",
            "referral_message",
            "outbox_envelope",
            "inbox_envelope",
        ):
            for statement in rls_policy_sql(table):
                op.execute(statement)


def downgrade() -> None:
    with op.batch_alter_table("consent", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_consent_tenant_id"))
        batch_op.drop_index(batch_op.f("ix_consent_subject_id"))
        batch_op.drop_index(batch_op.f("ix_consent_case_id"))

    op.drop_table("consent")
    with op.batch_alter_table("referral_timeline", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_referral_timeline_tenant_id"))
        batch_op.drop_index(batch_op.f("ix_referral_timeline_referral_id"))

    op.drop_table("referral_timeline")
    with op.batch_alter_table("referral_message", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_referral_message_tenant_id"))
        batch_op.drop_index(batch_op.f("ix_referral_message_referral_id"))

    op.drop_table("referral_message")
    with op.batch_alter_table("document", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_document_tenant_id"))

    op.drop_table("document")
    with op.batch_alter_table("referral", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_referral_tenant_id"))
        batch_op.drop_index(batch_op.f("ix_referral_status"))
        batch_op.drop_index(batch_op.f("ix_referral_exchange_id"))

    op.drop_table("referral")
    with op.batch_alter_table("case_subject", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_case_subject_tenant_id"))
        batch_op.drop_index(batch_op.f("ix_case_subject_case_id"))

    op.drop_table("case_subject")
    with op.batch_alter_table("case_file", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_case_file_tenant_id"))

    op.drop_table("case_file")
    with op.batch_alter_table("outbox_envelope", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_outbox_envelope_tenant_id"))
        batch_op.drop_index(batch_op.f("ix_outbox_envelope_sent_at"))
        batch_op.drop_index(batch_op.f("ix_outbox_envelope_next_attempt_at"))

    op.drop_table("outbox_envelope")
    with op.batch_alter_table("inbox_envelope", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_inbox_envelope_tenant_id"))

    op.drop_table("inbox_envelope")
    with op.batch_alter_table("dead_letter", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_dead_letter_recipient_tenant_id"))
        batch_op.drop_index(batch_op.f("ix_dead_letter_envelope_id"))

    op.drop_table("dead_letter")
