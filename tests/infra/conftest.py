"""Fixtures of tests/infra: main.bicep, parsed once (tests/bicep_text.py)."""

from __future__ import annotations

import pytest
from bicep_text import BICEP, Bicep, parse


@pytest.fixture(scope="session")
def bicep() -> Bicep:
    return parse(BICEP.read_text(encoding="utf-8"))
