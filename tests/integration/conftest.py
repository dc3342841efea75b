"""Fixtures shared by the exchange's integration tests."""

from __future__ import annotations

from tests.integration.audit.test_audit_seal import cli, node, node_settings  # noqa: F401 - shared by the audit tests
from tests.integration.exchange.referrals.test_referral_loop import agencies  # noqa: F401 - re-exported as a shared fixture
