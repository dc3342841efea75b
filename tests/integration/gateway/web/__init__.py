"""The staff pages, in a real browser session's requests."""
