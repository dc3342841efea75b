"""Cases, consents, referrals and the encrypted envelopes that carry them between tenants."""

# Every exchange table that holds one tenant's rows: row-level security guards each
# (tests/integration/tenants/test_rls.py).
EXCHANGE_TENANT_TABLES = (
    "case_file",
    "case_subject",
    "consent",
    "document",
    "referral",
    "referral_timeline",
    "referral_message",
    "outbox_envelope",
    "inbox_envelope",
    "plan",
    "plan_task",
    "reminder_sent",
    "letter_sequence",
    "letter_prefix",
    "referral_letter",
    "care_plan",
    "care_goal",
    "care_action",
)
