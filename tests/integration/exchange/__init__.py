"""The exchange's areas end to end."""
