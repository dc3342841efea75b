"""Envelopes over the real NATS JetStream."""
