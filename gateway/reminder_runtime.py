"""The reminder worker: every few minutes, email the deadline reminders that are due (when SMTP is configured)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from exchange.mail import SmtpMailer, SmtpServer
from exchange.reminders import ReminderMail
from gateway.settings import MailSettings, Settings
from tenants.clock import Clock

logger = logging.getLogger(__name__)


def smtp_mailer(settings: MailSettings) -> SmtpMailer | None:
    if settings.smtp_host is None or settings.sender is None:
        return None
    return SmtpMailer(
        SmtpServer(
            host=settings.smtp_host,
            port=settings.smtp_port,
            sender=settings.sender,
            username=settings.username,
            password=settings.password,
            starttls=settings.starttls,
        )
    )


class ReminderWorker:
    """Runs `ReminderMail.run_once` every `interval` in a task of its own; does nothing when SMTP is not set up."""

    def __init__(self, mail: ReminderMail, interval: dt.timedelta) -> None:
        self.mail = mail
        self._interval = interval.total_seconds()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def from_settings(
        cls, settings: Settings, sessions: async_sessionmaker[AsyncSession], clock: Clock
    ) -> ReminderWorker:
        mail = ReminderMail(
            sessions,
            clock,
            smtp_mailer(settings.mail),
            lead=settings.reminders.lead,
            base_url=settings.server.base_url,
        )
        return cls(mail, settings.reminders.interval)

    async def run_once(self) -> int:
        return await self.mail.run_once()

    def start(self) -> None:
        if self._task is not None:
            raise RuntimeError("reminder worker already started")
        if not self.mail.enabled:
            return
        self._stop = asyncio.Event()  # bound to the loop that runs the app, not the one that built it
        self._task = asyncio.create_task(self._run(), name="reminder-mail")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        self._stop.set()
        # A message being handed to the mail server is let finish: its row then records it as sent.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(task), 10.0)
        if not task.done():
            task.cancel()
            await asyncio.wait({task})

    async def _run(self) -> None:
        while not self._stop.is_set():
            try:
                await self.mail.run_once()
            except Exception as exc:  # the database or the mail server is away: try again next round
                logger.warning("reminder pass failed (%s); retrying in %.0fs", type(exc).__name__, self._interval)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self._interval)
