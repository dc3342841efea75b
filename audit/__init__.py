"""The tamper-evident audit trail (built on tenants; used by exchange)."""
