"""The HTTP surface, the CLI and the process model."""
