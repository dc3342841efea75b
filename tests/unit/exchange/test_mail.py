"""The SMTP mailer reports a server it cannot reach as MailError, without the recipient's address."""

from __future__ import annotations

import socket
from email.message import EmailMessage

import pytest

from exchange.plans.mail import MailError, MemoryMailer, SmtpMailer, SmtpServer


def message() -> EmailMessage:
    out = EmailMessage()
    out["To"] = "intake@opeka.example.org"
    out["Subject"] = "casebridge"
    out.set_content("Напоминание")
    return out


async def test_an_unreachable_server_is_a_mail_error() -> None:
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    mailer = SmtpMailer(SmtpServer("127.0.0.1", port, "cb@example.org", starttls=False, timeout=5))
    with pytest.raises(MailError) as raised:
        await mailer.send(message())
    assert "@" not in str(raised.value)


async def test_the_memory_mailer_keeps_messages_with_its_sender() -> None:
    mailer = MemoryMailer("cb@example.org")
    await mailer.send(message())
    (sent,) = mailer.sent
    assert sent["From"] == "cb@example.org"
    assert "password" not in repr(SmtpServer("h", 25, "cb@example.org", username="u", password="password"))
