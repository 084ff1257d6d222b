"""The extension's client over TLS: an engine started with `--tls-cert/--tls-key` and an
address `https://HOST:PORT`.

The certificates are made here with `openssl` (installed by scripts/test): a lab's own
authority, and an engine certificate for localhost signed by it, as a team would set up an
engine on a server.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import missing


def _openssl(*args, cwd):
    openssl = shutil.which("openssl")
    if openssl is None:
        missing("openssl not found (scripts/test installs it)")
    subprocess.run([openssl, *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def certificates(tmp_path_factory) -> tuple[Path, Path, Path]:
    """(ca.pem, engine.pem, engine.key)."""
    folder = tmp_path_factory.mktemp("tls")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
             "-days", "2", "-subj", "/CN=segkit test CA", cwd=folder)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "engine.key", "-out", "engine.csr",
             "-subj", "/CN=localhost", cwd=folder)
    (folder / "ext.cnf").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n")
    _openssl("x509", "-req", "-in", "engine.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", "engine.pem", "-days", "2", "-extfile", "ext.cnf", cwd=folder)
    return folder / "ca.pem", folder / "engine.pem", folder / "engine.key"


@pytest.fixture(scope="module")
def tls_engine(segkit_bin, certificates):
    from segkit_slicer.process import LocalEngine

    _, cert, key = certificates
    local = LocalEngine(str(segkit_bin), extra_args=["--tls-cert", str(cert), "--tls-key", str(key)]).start()
    try:
        local.wait_ready()
        yield local
    finally:
        local.stop()


def test_https_address_connects_with_the_labs_authority(tls_engine, certificates):
    from segkit_slicer.client import EngineClient

    ca, _, _ = certificates
    with EngineClient(f"https://localhost:{tls_engine.port}", tls_ca=str(ca)) as client:
        assert client.tls and client.address == f"localhost:{tls_engine.port}"
        assert client.engine_info().api_version == "segkit.v1"
        assert "Threshold" in [e.name for e in client.list_effects()]


def test_the_authority_can_come_from_the_environment(tls_engine, certificates, monkeypatch):
    from segkit_slicer.client import EngineClient

    monkeypatch.setenv("SEGKIT_TLS_CA", str(certificates[0]))
    with EngineClient(f"grpcs://localhost:{tls_engine.port}") as client:
        assert client.engine_info().api_version == "segkit.v1"


def test_untrusted_or_plain_text_connections_fail_with_a_message(tls_engine):
    from segkit_slicer.client import EngineClient, EngineError

    # The system's authorities do not know the lab's.
    with EngineClient(f"https://localhost:{tls_engine.port}", connect_timeout_s=3) as client:
        with pytest.raises(EngineError):
            client.engine_info()
    # A plain-text client gets no answer from a TLS engine.
    with EngineClient(f"localhost:{tls_engine.port}", connect_timeout_s=3) as client:
        with pytest.raises(EngineError):
            client.engine_info()


def test_a_bad_authority_file_is_named(tmp_path):
    from segkit_slicer.client import EngineClient, EngineError

    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate")
    with pytest.raises(EngineError, match="ca.pem holds no PEM certificate"):
        EngineClient("https://localhost:1", tls_ca=str(bad))
    with pytest.raises(EngineError, match="cannot read"):
        EngineClient("https://localhost:1", tls_ca=str(tmp_path / "missing.pem"))
