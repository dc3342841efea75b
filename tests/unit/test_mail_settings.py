"""SMTP and reminder settings: read from CASEBRIDGE_* variables, refused when unsafe or incomplete."""

from __future__ import annotations

import datetime as dt

import pytest

from gateway.settings import Settings, SettingsError

SMTP = {"CASEBRIDGE_SMTP_HOST": "smtp.example.org", "CASEBRIDGE_SMTP_FROM": "casebridge@example.org"}


def test_mail_is_off_by_default_and_reminders_have_defaults() -> None:
    settings = Settings.from_env({})
    assert not settings.mail.enabled
    assert settings.reminders.lead == dt.timedelta(hours=48)
    assert settings.reminders.interval == dt.timedelta(seconds=300)


def test_a_configured_server() -> None:
    env = {
        **SMTP,
        "CASEBRIDGE_SMTP_PORT": "2525",
        "CASEBRIDGE_SMTP_USER": "cb",
        "CASEBRIDGE_SMTP_PASSWORD": "s3cret",
        "CASEBRIDGE_REMINDER_LEAD_HOURS": "24",
    }
    settings = Settings.from_env(env)
    mail = settings.mail
    assert (mail.enabled, mail.smtp_host, mail.smtp_port, mail.sender) == (
        True,
        "smtp.example.org",
        2525,
        "casebridge@example.org",
    )
    assert mail.starttls
    assert "s3cret" not in repr(settings)
    assert settings.reminders.lead == dt.timedelta(hours=24)


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"CASEBRIDGE_SMTP_HOST": "smtp.example.org"}, "CASEBRIDGE_SMTP_FROM"),
        ({**SMTP, "CASEBRIDGE_SMTP_FROM": "casebridge"}, "CASEBRIDGE_SMTP_FROM"),
        ({**SMTP, "CASEBRIDGE_SMTP_USER": "cb"}, "CASEBRIDGE_SMTP_PASSWORD"),
        ({**SMTP, "CASEBRIDGE_SMTP_STARTTLS": "maybe"}, "CASEBRIDGE_SMTP_STARTTLS"),
        (
            {
                **SMTP,
                "CASEBRIDGE_SMTP_USER": "cb",
                "CASEBRIDGE_SMTP_PASSWORD": "pw",
                "CASEBRIDGE_SMTP_STARTTLS": "false",
            },
            "CASEBRIDGE_SMTP_STARTTLS",
        ),
        ({**SMTP, "CASEBRIDGE_SMTP_PORT": "0"}, "CASEBRIDGE_SMTP_PORT"),
        ({"CASEBRIDGE_REMINDER_LEAD_HOURS": "0"}, "CASEBRIDGE_REMINDER_LEAD_HOURS"),
        ({"CASEBRIDGE_REMINDER_INTERVAL_SECONDS": "x"}, "CASEBRIDGE_REMINDER_INTERVAL_SECONDS"),
    ],
)
def test_unusable_values_are_refused_by_name(env: dict[str, str], names: str) -> None:
    with pytest.raises(SettingsError, match=names):
        Settings.from_env(env)


def test_a_password_in_clear_is_allowed_only_to_a_relay_on_this_machine() -> None:
    env = {
        **SMTP,
        "CASEBRIDGE_SMTP_HOST": "127.0.0.1",
        "CASEBRIDGE_SMTP_USER": "cb",
        "CASEBRIDGE_SMTP_PASSWORD": "pw",
        "CASEBRIDGE_SMTP_STARTTLS": "false",
    }
    assert not Settings.from_env(env).mail.starttls
