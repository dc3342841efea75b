"""The Litestar application, its settings, authentication and command line: the composition root."""
