"""Fixtures shared by the exchange's integration tests."""

from __future__ import annotations

from tests.integration.test_referral_loop import agencies  # noqa: F401 - re-exported as a shared fixture
