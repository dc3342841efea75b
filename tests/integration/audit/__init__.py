"""The audit trail against a real database."""
