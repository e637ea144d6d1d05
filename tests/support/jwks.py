"""A real JWKS endpoint on a loopback port, and tokens minted against its keys.

`JwksServer` serves the public halves of keys generated here (RSA and EC P-256) as an HTTP
JWKS document, from a thread, so the app fetches them over real HTTP. A test rotates keys,
makes the server fail (500) or hang, sets its Cache-Control, and counts its requests.
`Issuer` mints tokens: valid ones, and every kind of bad one.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.support.services import free_port

ISSUER = "https://issuer.hera.test"
AUDIENCE = "hera-test-audience"
SIGNING_KEY = "a-test-url-signing-key-of-at-least-32-bytes!"


@dataclass
class SigningKey:
    kid: str
    kind: str  # "RSA" | "EC"
    private: Any

    @property
    def algorithm(self) -> str:
        return "RS256" if self.kind == "RSA" else "ES256"

    def public_jwk(self) -> dict[str, Any]:
        algorithm = (
            jwt.algorithms.RSAAlgorithm if self.kind == "RSA" else jwt.algorithms.ECAlgorithm
        )
        jwk: dict[str, Any] = json.loads(algorithm.to_jwk(self.private.public_key()))
        return {**jwk, "kid": self.kid, "use": "sig", "alg": self.algorithm}

    def public_pem(self) -> bytes:
        return bytes(
            self.private.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )


def new_key(kind: str = "RSA", kid: str | None = None) -> SigningKey:
    private = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        if kind == "RSA"
        else ec.generate_private_key(ec.SECP256R1())
    )
    return SigningKey(kid or f"{kind.lower()}-{uuid.uuid4().hex[:8]}", kind, private)


@dataclass
class JwksServer:
    keys: list[SigningKey]
    cache_control: str = "public, max-age=3600"
    fail: bool = False  # answer 500
    # Cleared: the issuer holds every answer until the test sets it (a slow issuer).
    answering: threading.Event = field(default_factory=threading.Event)
    requests: int = 0
    url: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def document(self) -> bytes:
        return json.dumps({"keys": [k.public_jwk() for k in self.keys]}).encode()


@contextmanager
def jwks_server(*keys: SigningKey) -> Iterator[JwksServer]:
    state = JwksServer(list(keys) or [new_key("RSA"), new_key("EC")])
    state.answering.set()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            with state._lock:
                state.requests += 1
            state.answering.wait(timeout=30)  # in the server's own thread
            if state.fail:
                self.send_response(500)
                self.end_headers()
                return
            body = state.document()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Cache-Control", state.cache_control)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: Any) -> None:
            return None

    port = free_port()
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    state.url = f"http://127.0.0.1:{port}/jwks.json"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@dataclass
class Issuer:
    """Mints tokens for the keys of a JWKS server (or for keys it never published)."""

    key: SigningKey
    issuer: str = ISSUER
    audience: str = AUDIENCE

    def claims(self, subject: str = "user-1", **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        base = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": subject,
            "iat": now,
            "exp": now + 3600,
            "email": f"{subject}@example.com",
            "name": "テスト ユーザー",
        }
        base.update(overrides)
        return {k: v for k, v in base.items() if v is not None}

    def token(
        self,
        subject: str = "user-1",
        *,
        key: SigningKey | None = None,
        headers: dict[str, Any] | None = None,
        **claims: Any,
    ) -> str:
        key = key or self.key
        return jwt.encode(
            self.claims(subject, **claims),
            key.private,
            algorithm=key.algorithm,
            headers={"kid": key.kid, **(headers or {})},
        )

    def bearer(self, subject: str = "user-1", **claims: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(subject, **claims)}"}


def auth_settings(server: JwksServer, **extra: Any) -> dict[str, Any]:
    """Settings keywords that point Hera at this JWKS server."""
    return {
        "auth_mode": "optional",
        "auth_issuer": ISSUER,
        "auth_audience": AUDIENCE,
        "auth_jwks_url": server.url,
        "url_signing_key": SIGNING_KEY,
        **extra,
    }


def auth_env(server: JwksServer) -> dict[str, str]:
    """The same, as the environment of a server process."""
    return {name.upper(): str(value) for name, value in auth_settings(server).items()}
