"""Cases, consents, referrals and the encrypted envelopes that carry them between tenants."""
