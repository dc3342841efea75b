"""Outgoing email: a `Mailer` contract, an SMTP implementation (smtplib in a worker thread) and an in-memory one."""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Protocol

import anyio.to_thread


class MailError(Exception):
    """The mail server could not be reached or refused the message; it was not accepted for delivery."""


class Mailer(Protocol):
    async def send(self, message: EmailMessage) -> None:
        """Hand one message to the mail system; returns once it is accepted, raises MailError otherwise."""
        ...


@dataclass(frozen=True, slots=True)
class SmtpServer:
    host: str
    port: int
    sender: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    starttls: bool = True
    timeout: float = 30.0


class SmtpMailer:
    """One SMTP connection per message: reminders are few, and a long-lived connection would need keep-alive care."""

    def __init__(self, server: SmtpServer) -> None:
        self.server = server

    @property
    def sender(self) -> str:
        return self.server.sender

    async def send(self, message: EmailMessage) -> None:
        if "From" not in message:
            message["From"] = self.server.sender
        await anyio.to_thread.run_sync(self._send, message)

    def _send(self, message: EmailMessage) -> None:
        server = self.server
        try:
            with smtplib.SMTP(server.host, server.port, timeout=server.timeout) as smtp:
                if server.starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if server.username:
                    smtp.login(server.username, server.password or "")
                smtp.send_message(message)
        except (OSError, smtplib.SMTPException) as exc:
            # The class name only: a server's reply can quote the recipient's address.
            raise MailError(f"the mail server did not accept the message ({type(exc).__name__})") from exc


class MemoryMailer:
    """Keeps messages in a list: for unit tests of code that sends mail, in place of a server."""

    def __init__(self, sender: str = "casebridge@localhost") -> None:
        self.sender = sender
        self.sent: list[EmailMessage] = []

    async def send(self, message: EmailMessage) -> None:
        if "From" not in message:
            message["From"] = self.sender
        self.sent.append(message)
