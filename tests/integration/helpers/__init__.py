"""Helpers the integration tests share, one module per kind of thing they make or check; fixtures are in conftest.py."""
