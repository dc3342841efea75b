"""CASEBRIDGE_PEERS: a TOML file of peer nodes, each with a name, a base URL and (for https) its TLS key pin."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from gateway.settings import Settings, SettingsError
from tenants.peers import Peer

PIN = "sha256/" + base64.b64encode(bytes(range(32))).decode()


def _settings(tmp_path: Path, text: str) -> Settings:
    path = tmp_path / "peers.toml"
    path.write_text(text, encoding="utf-8")
    return Settings.from_env({"CASEBRIDGE_DATA_DIR": str(tmp_path), "CASEBRIDGE_PEERS": str(path)})


def test_no_file_means_no_peers(tmp_path: Path) -> None:
    settings = Settings.from_env({"CASEBRIDGE_DATA_DIR": str(tmp_path)})
    assert settings.peers.peers == ()
    assert settings.peers.file is None


def test_peers_in_file_order(tmp_path: Path) -> None:
    settings = _settings(
        tmp_path,
        f"""
[[peer]]
name = "east-node"
url = "https://127.0.0.1:8443/"
pin = "{PIN}"

[[peer]]
name = "dev-node"
url = "http://localhost:8001"
""",
    )
    assert settings.peers.peers == (
        Peer(name="east-node", url="https://127.0.0.1:8443", pin=PIN),
        Peer(name="dev-node", url="http://localhost:8001", pin=None),
    )
    assert settings.peers.named("dev-node") == settings.peers.peers[1]
    assert settings.peers.named("west-node") is None


def test_a_file_without_peers_is_empty(tmp_path: Path) -> None:
    assert _settings(tmp_path, "").peers.peers == ()


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[[peer]\n", "is not valid TOML"),
        ("peers = []\n", "unknown top-level key 'peers'"),
        ("peer = 1\n", "array of tables"),
        ('[[peer]]\nurl = "https://a.example"\n', "name must be"),
        ('[[peer]]\nname = "East Node"\nurl = "https://a.example"\n', "name must be"),
        ('[[peer]]\nname = "east"\n', "url is required"),
        ('[[peer]]\nname = "east"\nurl = "ftp://a.example"\n', "must be an https:// URL"),
        ('[[peer]]\nname = "east"\nurl = "http://a.example"\n', "unless the peer is on this machine"),
        ('[[peer]]\nname = "east"\nurl = "https://a.example/api"\npin = "x"\n', "scheme, host and port only"),
        ('[[peer]]\nname = "east"\nurl = "https://a.example"\n', "an https peer needs a pin"),
        ('[[peer]]\nname = "east"\nurl = "https://a.example"\npin = "md5/abc"\n', 'starts with "sha256/"'),
        ('[[peer]]\nname = "east"\nurl = "https://a.example"\npin = "sha256/!!"\n', "standard base64"),
        ('[[peer]]\nname = "east"\nurl = "https://a.example"\npin = "sha256/AAAA"\n', "32 bytes"),
        ('[[peer]]\nname = "east"\nurl = "https://a.example"\npin = 7\n', "pin must be a string"),
        (f'[[peer]]\nname = "east"\nurl = "http://127.0.0.1:1"\npin = "{PIN}"\n', "applies to https only"),
        (f'[[peer]]\nname = "east"\nurl = "https://a.example"\npin = "{PIN}"\nkey = 1\n', "unknown key 'key'"),
        (
            f'[[peer]]\nname = "east"\nurl = "https://a.example"\npin = "{PIN}"\n'
            f'[[peer]]\nname = "east"\nurl = "https://b.example"\npin = "{PIN}"\n',
            "used twice",
        ),
        (
            f'[[peer]]\nname = "east"\nurl = "https://a.example"\npin = "{PIN}"\n'
            f'[[peer]]\nname = "west"\nurl = "https://a.example/"\npin = "{PIN}"\n',
            "same url",
        ),
    ],
)
def test_a_bad_file_names_its_problem(tmp_path: Path, text: str, problem: str) -> None:
    with pytest.raises(SettingsError, match="CASEBRIDGE_PEERS") as raised:
        _settings(tmp_path, text)
    assert problem in str(raised.value)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.toml"
    with pytest.raises(SettingsError, match=f"CASEBRIDGE_PEERS: cannot read {missing}"):
        Settings.from_env({"CASEBRIDGE_DATA_DIR": str(tmp_path), "CASEBRIDGE_PEERS": str(missing)})


def test_the_second_table_is_named_by_number_and_name(tmp_path: Path) -> None:
    text = f'[[peer]]\nname = "east"\nurl = "https://a.example"\npin = "{PIN}"\n[[peer]]\nname = "west"\nurl = "https://b.example"\n'
    with pytest.raises(SettingsError, match=r"\[\[peer\]\] number 2 \(west\): an https peer needs a pin"):
        _settings(tmp_path, text)
