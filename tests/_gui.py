"""Fixtures shared by the GUI test modules that import them."""

from __future__ import annotations

from pathlib import Path

import pytest

from napari_diskimage import _settings


@pytest.fixture(autouse=True)
def config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Never read or write the real user's settings."""
    folder = tmp_path / "config"
    monkeypatch.setenv(_settings.CONFIG_ENV_VAR, str(folder))
    return folder
