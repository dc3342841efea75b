"""What a real SMTP server on loopback (aiosmtpd, the `smtp_sink` fixture) does with the messages casebridge sends: keep
them for the tests of outgoing mail."""

from __future__ import annotations

import email
import email.policy
import socket
from email.message import EmailMessage
from pathlib import Path

from aiosmtpd.smtp import SMTP, Envelope, Session

from gateway.db import create_engine, upgrade_schema
from gateway.settings import Settings
from tests.environment import empty_bus, settings_for


def free_port() -> int:
    """A loopback port nothing listens on (just now)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


class Sink:
    """An SMTP server's message handler that keeps every message it is given."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802 - aiosmtpd's hook name
        raw = envelope.original_content or b""
        message = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append(message)
        return "250 Message accepted for delivery"


def smtp(port: int) -> dict[str, str]:
    """The settings of a mail server on loopback at `port`, without TLS (nothing leaves the machine)."""
    return {
        "CASEBRIDGE_SMTP_HOST": "127.0.0.1",
        "CASEBRIDGE_SMTP_PORT": str(port),
        "CASEBRIDGE_SMTP_FROM": "casebridge@example.org",
        "CASEBRIDGE_SMTP_STARTTLS": "false",
    }


async def settings_with(database_url: str, data_dir: Path, nats_url: str, **environment: str) -> Settings:
    """Settings for the test's database (brought to the newest schema), data directory and nats-server, with more of
    the environment (the mail server's, say)."""
    await empty_bus(nats_url)
    settings = settings_for(database_url, data_dir, nats_url, **environment)
    engine = create_engine(settings.database)
    await upgrade_schema(engine)
    await engine.dispose()
    return settings
