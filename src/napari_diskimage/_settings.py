"""The user's saved choices, kept across napari restarts (GUI-free).

The disk-image directory and which sections of the "Disk images" panel are
open are saved, as JSON in the per-user config
folder (``~/.config/napari-diskimage/settings.json`` on Linux, or
``$NAPARI_DISKIMAGE_CONFIG_DIR``).  Nothing is read at ``import
napari_diskimage``: the napari widgets and reader call
:func:`apply_saved_disk_image_dir` when they load, and
``$NAPARI_DISKIMAGE_DIR`` always wins over the saved folder.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

import platformdirs

from . import _scratch

__all__ = [
    "CONFIG_ENV_VAR",
    "apply_saved_disk_image_dir",
    "load_settings",
    "number_setting",
    "save_disk_image_dir",
    "save_setting",
    "settings_file",
]

#: Environment variable naming the folder of the settings file (tests, kiosks).
CONFIG_ENV_VAR = "NAPARI_DISKIMAGE_CONFIG_DIR"

_KEY = "disk_image_dir"


def settings_file() -> Path:
    """The JSON file holding the saved settings (it may not exist)."""
    folder = os.environ.get(CONFIG_ENV_VAR)
    base = (
        Path(folder).expanduser()
        if folder
        else platformdirs.user_config_path("napari-diskimage")
    )
    return base / "settings.json"


def load_settings() -> dict[str, Any]:
    """The saved settings; ``{}`` when there are none or the file is unreadable."""
    try:
        data = json.loads(settings_file().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def number_setting(key: str, default: int) -> int:
    """The saved whole number under ``key`` (a size in bytes, a count), or
    ``default`` when none is saved or it is not a number."""
    value = load_settings().get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return default
    return int(value)


def save_setting(key: str, value: Any, *, quiet: bool = False) -> Path | None:
    """Remember ``value`` under ``key`` for the next sessions (JSON).

    Written atomically (temporary file + rename).  Returns the settings
    file, or None if it could not be written and ``quiet`` is set.

    Raises
    ------
    OSError
        The config folder cannot be written (unless ``quiet``); the
        message names it.
    """
    path = settings_file()
    data = load_settings()
    data[key] = value
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if quiet:
            return None
        raise OSError(
            exc.errno,
            f"cannot save the settings in {str(path)!r}: {exc.strerror}; the "
            "choice holds until napari is closed",
            str(path),
        ) from exc
    return path


def save_disk_image_dir(folder: str | os.PathLike[str]) -> Path:
    """Remember ``folder`` as the disk-image directory for the next sessions.

    Returns the settings file.

    Raises
    ------
    OSError
        The config folder cannot be written; the message names it.
    """
    saved = save_setting(_KEY, str(Path(folder).expanduser().absolute()))
    assert saved is not None
    return saved


def saved_disk_image_dir() -> Path | None:
    """The saved disk-image directory, or None."""
    value = load_settings().get(_KEY)
    return Path(value) if isinstance(value, str) and value else None


def apply_saved_disk_image_dir() -> str | None:
    """Use the saved disk-image directory, unless something else decides.

    Does nothing when ``$NAPARI_DISKIMAGE_DIR`` is set (it wins), when a
    folder was already chosen in this session (:func:`set_disk_image_dir`)
    or when nothing was saved.  Never raises: returns a message for the
    user when the saved folder cannot be used (the default is kept).
    """
    if os.environ.get(_scratch.ENV_VAR) or _scratch._dir is not None:
        return None
    folder = saved_disk_image_dir()
    if folder is None:
        return None
    try:
        _scratch.set_disk_image_dir(folder)
    except OSError as exc:
        return (
            f"the saved disk-image directory cannot be used ({exc}); using "
            f"{str(_scratch.get_disk_image_dir())!r} instead. Choose another "
            "folder in the 'Disk-image directory' widget."
        )
    return None
