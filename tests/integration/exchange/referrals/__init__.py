"""Referrals end to end."""
