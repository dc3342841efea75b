"""Multi-agency plans and reminders."""
