"""`casebridge peers`: the pin of a certificate file for the peers file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.integration.helpers.nodes import throwaway_certificate


def test_pin_prints_the_line_for_the_peers_file(cli: Any, tmp_path: Path) -> None:
    certificate = throwaway_certificate(tmp_path)
    code, result, _ = cli("peers", "pin", "--cert", str(certificate.cert_file))
    assert code == 0
    assert result == {"pin": certificate.pin, "line": f'pin = "{certificate.pin}"'}


def test_pin_of_something_else_fails_clearly(cli: Any, tmp_path: Path) -> None:
    certificate = throwaway_certificate(tmp_path)
    code, _, error = cli("peers", "pin", "--cert", str(certificate.key_file))
    assert (code, error.strip()) == (
        1,
        f"casebridge: error: {certificate.key_file} is not an X.509 certificate (PEM or DER)",
    )
    code, _, error = cli("peers", "pin", "--cert", str(tmp_path / "missing.pem"))
    assert code == 1
    assert "cannot read the certificate file" in error
