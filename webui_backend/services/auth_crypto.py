"""Secrets: Argon2id password hashes, signed access tokens, random session and API-key tokens."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from webui_backend.errors import UnauthorizedError

log = logging.getLogger(__name__)

_ALGORITHM = "HS256"
_SECRET_FILE = "jwt_secret"
API_KEY_PREFIX = "sk-"


class Passwords:
    """Argon2id (argon2-cffi's defaults follow RFC 9106). Hashing costs tens of milliseconds
    of CPU, so it runs in a worker thread and never stalls the event loop."""

    def __init__(self) -> None:
        self._hasher = PasswordHasher()
        # Verified against when the account does not exist, so both paths take as long.
        self._dummy = self._hasher.hash(secrets.token_urlsafe(16))

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, password_hash: str | None, password: str) -> bool:
        return await asyncio.to_thread(self._verify, password_hash, password)

    def _verify(self, password_hash: str | None, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash or self._dummy, password) and (
                password_hash is not None
            )
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False


@dataclass(frozen=True, slots=True)
class AccessClaims:
    user_id: str
    token_version: int
    # `exp`, seconds since the epoch.
    expires_at: float


class AccessTokens:
    """Short-lived HS256 JWTs: `sub` = user id, `tv` = the user's token version (bumped on
    disable and password change, which voids every token issued before)."""

    def __init__(self, secret: str, ttl_s: int) -> None:
        self._secret = secret
        self.ttl_s = ttl_s

    def issue(self, user_id: str, token_version: int) -> str:
        now = int(time.time())
        claims = {"sub": user_id, "tv": token_version, "iat": now, "exp": now + self.ttl_s}
        return jwt.encode(claims, self._secret, algorithm=_ALGORITHM)

    def csrf_for(self, session_token: str) -> str:
        """The CSRF token of a browser session: derived from its session cookie with the
        server's secret, so a token planted with a cookie (a sibling subdomain can set
        cookies) is worthless without the session it belongs to."""
        mac = hmac.new(self._secret.encode(), b"csrf\x00" + session_token.encode(), "sha256")
        return mac.hexdigest()

    def decode(self, token: str) -> AccessClaims:
        """Raises UnauthorizedError for a bad signature, an expired or a malformed token."""
        try:
            claims = jwt.decode(
                token, self._secret, algorithms=[_ALGORITHM], options={"require": ["exp", "sub"]}
            )
        except jwt.ExpiredSignatureError as exc:
            raise UnauthorizedError("The access token has expired.", code="token_expired") from exc
        except jwt.PyJWTError as exc:
            raise UnauthorizedError("The access token is not valid.", code="invalid_token") from exc
        user_id, version, exp = claims.get("sub"), claims.get("tv", 0), claims["exp"]
        if not isinstance(user_id, str) or not isinstance(version, int):
            raise UnauthorizedError("The access token is not valid.", code="invalid_token")
        return AccessClaims(user_id=user_id, token_version=version, expires_at=float(exp))


def load_or_create_secret(configured: str, data_dir: Path) -> str:
    """The configured secret, else the one kept under the data dir, else a new one saved there
    (readable by the owner only) so tokens survive restarts."""
    if configured:
        return configured
    path = data_dir / _SECRET_FILE
    if path.exists():
        secret = path.read_text().strip()
        if len(secret) >= 32:
            return secret
    data_dir.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secret)
    log.info("generated a token secret in %s", path)
    return secret


def random_token(nbytes: int = 32) -> str:
    return secrets.token_urlsafe(nbytes)


def new_api_key() -> tuple[str, str]:
    """A new API key secret and the prefix shown in lists (`sk-` and 8 characters)."""
    secret = API_KEY_PREFIX + secrets.token_urlsafe(32)
    return secret, secret[: len(API_KEY_PREFIX) + 8]


def digest(token: str) -> str:
    """SHA-256 of a high-entropy token: what the database stores instead of the token."""
    return hashlib.sha256(token.encode()).hexdigest()
