"""Migration 0008 keeps its own frozen copy of the directory's search keys: today it must match the model's."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tenants.models import directory_keys, fold

MIGRATION = Path(__file__).parents[3] / "gateway" / "migrations" / "versions" / "0008_directory_services.py"


def _migration() -> ModuleType:
    spec = importlib.util.spec_from_file_location("migration_0008", MIGRATION)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_migration_imports_nothing_from_the_application() -> None:
    imports = [line for line in MIGRATION.read_text().splitlines() if line.startswith(("import ", "from "))]
    assert not [
        line for line in imports if line.split()[1].split(".")[0] in ("tenants", "exchange", "audit", "gateway")
    ]


PROFILES: list[tuple[str, str, str | None, dict[str, Any]]] = [
    (
        "Отдел ОПЕКИ",
        "opeka",
        "Северный  район",
        {
            "address": {"address_1": "ул. Ёлочная, 5", "city": "Санкт-Петербург", "postal_code": "190000", "x": None},
            "districts": ["Северный район", "ЁЛКИН | район"],
            "services": [
                {
                    "code": "family_support",
                    "name": "Сопровождение семьи",
                    "problems": ["family_conflict", "child_neglect"],
                    "description": "Социальный ПАТРОНАТ",
                    "districts": ["Ёлкин район"],
                },
                {"name": "Жильё", "problems": ["housing"]},
                "not a service",
                {"name": None, "code": "", "problems": []},
            ],
        },
    ),
    ("Фонд «Дом»", "dom", None, {}),
    ("Straße", "strasse", "", {"services": [{"name": "ΣΊΣΥΦΟΣ", "districts": ["İstanbul"]}]}),
    ("Центр", "centr", "Южный", {"address": {}, "districts": [], "services": []}),
]


@pytest.mark.parametrize(("name", "slug", "region", "profile"), PROFILES, ids=["full", "empty", "unicode", "bare"])
def test_the_frozen_keys_are_the_models(name: str, slug: str, region: str | None, profile: dict[str, Any]) -> None:
    frozen = _migration()
    assert frozen._directory_keys(name, slug, region, profile) == directory_keys(name, slug, region, profile)
    for text in (name, region or "", "Ёлки  ПАЛКИ\tёж"):
        assert frozen._fold(text) == fold(text)
