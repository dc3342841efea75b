"""Multi-agency plans: plans and their tasks, the plan report, reminders and the mail that carries them."""
