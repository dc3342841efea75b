"""Tenants, keys, the directory and row-level security against a real database."""
