"""The engine token goes to the system keyring when one is available, and to Slicer's
settings file (plain text) only when not (issue 10); the module says which."""

from __future__ import annotations

from segkit_slicer import token_store
from segkit_slicer.token_store import TokenStore

KEY = "Segkit/EngineToken"


class FakeKeyring:
    def __init__(self, fail_on_set=False):
        self.passwords = {}
        self.fail_on_set = fail_on_set

    def get_password(self, service, user):
        return self.passwords.get((service, user))

    def set_password(self, service, user, value):
        if self.fail_on_set:
            raise RuntimeError("locked")
        self.passwords[(service, user)] = value

    def delete_password(self, service, user):
        del self.passwords[(service, user)]


def settings():
    values = {}
    return values, (lambda k: values.get(k, "")), values.__setitem__


def test_with_a_keyring_the_token_never_reaches_the_settings_file():
    values, get, put = settings()
    values[KEY] = "old-plain"          # kept in plain text before a keyring existed
    ring = FakeKeyring()
    store = TokenStore(get, put, KEY, keyring=ring)
    assert store.get() == "old-plain"   # still works until it is set again
    store.set("s3cret")
    assert ring.passwords[(token_store.SERVICE, token_store.USER)] == "s3cret"
    assert values[KEY] == ""            # the plain copy is gone
    assert store.get() == "s3cret"
    assert store.where == "the system keyring"
    store.set("")
    assert ring.passwords == {} and store.get() is None
    store.set("")                        # clearing twice is fine


def test_without_a_keyring_the_settings_file_is_used_and_the_user_is_told():
    values, get, put = settings()
    store = TokenStore(get, put, KEY, keyring=None)
    store.set("s3cret")
    assert values[KEY] == "s3cret" and store.get() == "s3cret"
    assert "plain text" in store.where and "keyring" in store.where


def test_a_keyring_that_refuses_falls_back_to_the_settings_file():
    values, get, put = settings()
    store = TokenStore(get, put, KEY, keyring=FakeKeyring(fail_on_set=True))
    store.set("s3cret")
    assert values[KEY] == "s3cret" and store.get() == "s3cret"


def test_no_keyring_package_means_no_keyring(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_keyring(name, *args, **kwargs):
        if name == "keyring" or name.startswith("keyring."):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_keyring)
    assert token_store.system_keyring() is None
