"""Referrals: sending, the status machine, each side's copy, threads and the worklist."""
