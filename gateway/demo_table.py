"""`casebridge demo seed --table`: what `make run` prints for a person at the terminal, from the seed's JSON answer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def demo_table(seeded: dict[str, Any]) -> str:
    """The sign-in address, each agency's staff accounts with their one-time passwords, and its API client."""
    if not seeded["seeded"]:
        return (
            "casebridge: the demo agencies exist already; their one-time passwords were shown once, when they were "
            "made.\nTo start over, stop the server and delete ./var.\n"
        )
    lines = [
        f"casebridge demo data. Sign in at {seeded['sign_in']}",
        "Each password works once: the first sign-in asks for an authenticator app and a new password.",
        "These passwords are shown only now.",
    ]
    for tenant in seeded["tenants"]:
        rows = [(user["email"], ", ".join(user["roles"]), user["one_time_password"]) for user in tenant["users"]]
        lines += [
            "",
            f"{tenant['slug']}: {tenant['name']} ({tenant['kind']})",
            *_table(("email", "role", "one-time password"), rows),
        ]
        client = tenant["client"]
        lines.append(f"  API client {client['client_id']}, private key {client['private_jwk_file']}")
    lines += ["", "Without --table, casebridge demo seed prints all of this as one JSON object (make run JSON=1)."]
    return "\n".join(lines) + "\n"


def _table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> list[str]:
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=True)]
    return [
        "  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in (header, *rows)
    ]
