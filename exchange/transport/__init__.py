"""The transport between tenants: envelopes and their typed bodies, the outbox, the relay, the inbox, dead letters."""
