"""Referral letters: the registered, signed PDF (petition, cover letter, document request) a referral carries."""
