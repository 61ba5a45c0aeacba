"""Throwaway TLS material for the loopback test servers.

A fresh certificate authority (from ``trustme``) signs a certificate for
``127.0.0.1``, ``::1`` and ``localhost``. Nothing here touches the system
trust store: clients trust the CA only through :meth:`TLSMaterial.client_context`
or the PEM file written by :meth:`TLSMaterial.write_ca_pem`.
"""

from __future__ import annotations

import os
import ssl
import tempfile
from typing import Any

__all__ = ["TLSMaterial"]


class TLSMaterial:
    """A throwaway CA and a server certificate for loopback names.

    Example::

        material = TLSMaterial()
        server_ctx = material.server_context()
        client_ctx = material.client_context()  # verification on, trusts the CA
    """

    def __init__(self) -> None:
        try:
            import trustme
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise RuntimeError("tls=True needs the 'trustme' package (pip install zen_websocket[testing])") from exc
        self._ca: Any = trustme.CA()
        self._cert: Any = self._ca.issue_cert("127.0.0.1", "::1", "localhost")

    @property
    def ca_pem(self) -> bytes:
        """The CA certificate, PEM-encoded."""
        return bytes(self._ca.cert_pem.bytes())

    def server_context(self) -> ssl.SSLContext:
        """A server-side context presenting the loopback certificate."""
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._cert.configure_cert(ctx)
        return ctx

    def client_context(self) -> ssl.SSLContext:
        """A client-side context that trusts the throwaway CA (hostname check on)."""
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        self._ca.configure_trust(ctx)
        return ctx

    def write_ca_pem(self) -> str:
        """Write the CA certificate to a new temporary file and return its path.

        The caller owns the file and deletes it.
        """
        fd, path = tempfile.mkstemp(prefix="zen-ws-test-ca-", suffix=".pem")
        with os.fdopen(fd, "wb") as f:
            f.write(self.ca_pem)
        return path
