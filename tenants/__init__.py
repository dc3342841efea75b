"""Organisations, their people, agency systems, key rings and the partner directory."""
