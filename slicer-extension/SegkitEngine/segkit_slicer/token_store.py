"""Where the engine token is kept: the system keyring when one is available (the
`keyring` package with a working backend), else Slicer's settings file in plain text.

The Slicer module calls `TokenStore` with its QSettings getter and setter; nothing here
touches Qt, so it is tested with a dictionary and a stand-in keyring.
"""

from __future__ import annotations

from typing import Callable, Optional

SERVICE = "Segkit engine"
USER = "token"


def system_keyring():
    """The `keyring` module when it has a usable backend, else None (not installed, or
    only the "fail" backend, as on a headless Linux without a secret service)."""
    try:
        import keyring
        from keyring.backends import fail
    except Exception:
        return None
    try:
        if isinstance(keyring.get_keyring(), fail.Keyring):
            return None
    except Exception:
        return None
    return keyring


class TokenStore:
    """Reads and writes the token. `get_setting(key) -> str` and `set_setting(key, value)`
    are the settings file; `keyring` is a module with `get_password`, `set_password` and
    `delete_password` (`system_keyring()` by default; None: settings only)."""

    def __init__(self, get_setting: Callable[[str], str], set_setting: Callable[[str, str], None],
                 settings_key: str, keyring="system"):
        self.get_setting = get_setting
        self.set_setting = set_setting
        self.settings_key = settings_key
        self.keyring = system_keyring() if keyring == "system" else keyring

    @property
    def where(self) -> str:
        """Where a token set now is kept, in words for the user."""
        if self.keyring is not None:
            return "the system keyring"
        return ("Slicer's settings file, in plain text (no system keyring is available: "
                "install the Python package keyring with a backend to keep it there)")

    def get(self) -> Optional[str]:
        if self.keyring is not None:
            try:
                value = self.keyring.get_password(SERVICE, USER)
            except Exception:
                value = None
            if value:
                return value
        # A token kept in the settings before a keyring was available still works.
        return self.get_setting(self.settings_key) or None

    def set(self, token: Optional[str]) -> None:
        token = token or ""
        if self.keyring is not None:
            try:
                if token:
                    self.keyring.set_password(SERVICE, USER, token)
                else:
                    try:
                        self.keyring.delete_password(SERVICE, USER)
                    except Exception:
                        pass   # nothing stored
                # No plain copy stays behind in the settings file.
                self.set_setting(self.settings_key, "")
                return
            except Exception:
                pass   # the keyring refused: fall back to the settings file
        self.set_setting(self.settings_key, token)
