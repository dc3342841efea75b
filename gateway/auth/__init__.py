"""Authentication and authorization: OAuth2 for agency systems, sessions for staff, guards for routes."""
