"""Unit fixtures shared by several modules."""

import os

import pytest


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No RIVERRUN_* variable but the ones a test sets (on the monkeypatch returned)."""
    for name in list(os.environ):
        if name.upper().startswith("RIVERRUN_"):
            monkeypatch.delenv(name)
    return monkeypatch
