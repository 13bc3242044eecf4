"""Notifications: the core's errors shown to napari users, never swallowed."""

from __future__ import annotations

from napari.utils.notifications import show_error, show_info, show_warning

from .._errors import error_message

__all__ = ["error_message", "notify_error", "show_error", "show_info", "show_warning"]


def notify_error(what: str, exc: BaseException) -> None:
    """Show ``exc`` from the core as a napari error notification."""
    show_error(f"{what} failed: {error_message(exc)}")
