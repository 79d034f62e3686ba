"""Where the API's demo credentials are: the service's own settings are the ``api_*``
fields of the one settings object, :class:`schemas.settings.Settings`
(``METERLINE_API_*``)."""

from __future__ import annotations

from pathlib import Path

from schemas.settings import Settings

__all__ = ["DEMO_AUTH_FILE", "auth_file"]

DEMO_AUTH_FILE = str(Path(__file__).with_name("demo-auth.yaml"))


def auth_file(settings: Settings) -> str:
    """The auth file the API reads: ``METERLINE_API_AUTH_FILE``, else the demo's."""
    return settings.api_auth_file or DEMO_AUTH_FILE
