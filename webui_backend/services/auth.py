"""Accounts: register, log in and out, change password, and authenticate each request.

Three credentials authenticate a request: the browser's session cookie (a random token whose
SHA-256 is in `auth_session`), a short-lived access token (JWT) and an API key (`sk-...`,
SHA-256 in `api_key`). Every check reads the user row, so a disabled account or a changed
role takes effect on the next request; for access tokens and API keys that read is cached for
a few seconds (`PrincipalCache`), and changes made through this process (a disabled account, a
deleted key) drop it at once.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from webui_backend.db.models import User, UserRole, utcnow
from webui_backend.db.repositories import UserRepository
from webui_backend.db.repositories.admin import AppSettingRepository
from webui_backend.db.repositories.auth_sessions import ApiKeyRepository, AuthSessionRepository
from webui_backend.errors import ConflictError, ForbiddenError, InvalidInputError, UnauthorizedError
from webui_backend.services.auth_crypto import (
    API_KEY_PREFIX,
    AccessTokens,
    Passwords,
    digest,
    random_token,
)
from webui_backend.services.principal import AuthenticatedUser, Via
from webui_backend.services.principal_cache import PrincipalCache
from webui_backend.services.rate_limit import RateLimiter
from webui_backend.services.settings_store import SettingsStore

# app_setting key recording that the first account (the administrator) was created.
_FIRST_ADMIN_KEY = "bootstrap.first_admin"

# Seconds between two `last_used_at` writes for one API key: one write per request would turn
# every read into a write.
_KEY_TOUCH_INTERVAL = timedelta(seconds=60)
# Principal cache keys of API keys; access tokens (JWTs) never start with it.
_API_KEY_CACHE_PREFIX = "api_key:"


@dataclass(frozen=True, slots=True)
class LoginResult:
    user: User
    access_token: str
    expires_in: int
    session_token: str
    csrf_token: str


class AuthService:
    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        passwords: Passwords,
        tokens: AccessTokens,
        settings_store: SettingsStore,
        limiter: RateLimiter,
        session_ttl_s: int,
        principals: PrincipalCache | None = None,
    ) -> None:
        self._sessions = sessions
        # Access tokens already checked against the user row (see principal_cache).
        self._principals = principals or PrincipalCache()
        self._passwords = passwords
        self._tokens = tokens
        self._store = settings_store
        self._limiter = limiter
        self._session_ttl = timedelta(seconds=session_ttl_s)

    @property
    def access_token_ttl_s(self) -> int:
        return self._tokens.ttl_s

    def csrf_ok(self, session_token: str, sent: str | None) -> bool:
        """Whether `sent` (the CSRF header) is the token of this session cookie."""
        return sent is not None and hmac.compare_digest(self._tokens.csrf_for(session_token), sent)

    @property
    def session_ttl_s(self) -> int:
        return int(self._session_ttl.total_seconds())

    async def has_users(self) -> bool:
        async with self._sessions() as session:
            return await UserRepository(session).count() > 0

    async def register(self, *, email: str, password: str, name: str, address: str = "") -> User:
        """Create an account. The first one is an admin; later ones get the configured
        default role. Raises ForbiddenError (sign-up off), ConflictError (email taken) or
        RateLimitedError (too many attempts from this address: hashing costs CPU)."""
        runtime = self._store.current
        if address:
            await self._limiter.check(
                f"register:addr:{address}",
                limit=runtime.login_attempts_per_address_per_minute,
                what="sign-up attempts from this address",
            )
        password_hash = await self._passwords.hash(password)
        try:
            return await self._add_account(email, name, password_hash, runtime.signup_enabled)
        except IntegrityError:
            # Another sign-up committed first: the same email, or it became the first admin
            # (both saw no account). Decided again against what is stored now.
            return await self._add_account(email, name, password_hash, runtime.signup_enabled)

    async def _add_account(
        self, email: str, name: str, password_hash: str, signup_enabled: bool
    ) -> User:
        async with self._sessions() as session, session.begin():
            users, markers = UserRepository(session), AppSettingRepository(session)
            first = await users.count() == 0 and not await markers.exists(_FIRST_ADMIN_KEY)
            if not first and not signup_enabled:
                raise ForbiddenError("Sign-up is switched off.", code="signup_disabled")
            if await users.get_by_email(email) is not None:
                raise ConflictError("An account with this email exists.", code="email_taken")
            role = UserRole.ADMIN if first else UserRole(self._store.current.default_role)
            user = await users.add(
                email=email, name=name.strip(), role=role, password_hash=password_hash
            )
            if first:
                # Simultaneous first sign-ups all see no account; this key lets one commit.
                await markers.add_new(_FIRST_ADMIN_KEY, user.id)
            return user

    async def login(
        self, *, email: str, password: str, address: str, user_agent: str
    ) -> LoginResult:
        """Check the password and open a session; a success clears the account's count of
        attempts. Raises RateLimitedError before checking when the account or the address
        tried too often, and UnauthorizedError for a wrong email or password (the same error
        for both) or a disabled account."""
        runtime = self._store.current
        await self._limiter.check(
            f"login:addr:{address}",
            limit=runtime.login_attempts_per_address_per_minute,
            what="login attempts from this address",
        )
        await self._limiter.check(
            f"login:acct:{email.lower()}",
            limit=runtime.login_attempts_per_account_per_minute,
            what="login attempts for this account",
        )
        async with self._sessions() as session:
            user = await UserRepository(session).get_by_email(email)
        valid = await self._passwords.verify(user.password_hash if user else None, password)
        if user is None or not valid:
            raise UnauthorizedError("Wrong email or password.", code="invalid_credentials")
        if user.disabled_at is not None:
            raise UnauthorizedError("This account is disabled.", code="account_disabled")
        # The owner got in: earlier failures no longer count against the account. The
        # address's count stays, so logging in to one's own account cannot reset a guesser.
        if runtime.login_attempts_per_account_per_minute > 0:
            await self._limiter.reset(f"login:acct:{email.lower()}")
        return await self._open_session(user, address=address, user_agent=user_agent)

    async def issue_session(self, user: User, *, address: str, user_agent: str) -> LoginResult:
        """A session for a user who just proved who they are (after registering)."""
        return await self._open_session(user, address=address, user_agent=user_agent)

    async def _open_session(self, user: User, *, address: str, user_agent: str) -> LoginResult:
        session_token = random_token()
        now = utcnow()
        async with self._sessions() as session, session.begin():
            sessions = AuthSessionRepository(session)
            await sessions.delete_expired(now)
            await sessions.add(
                user_id=user.id,
                token_hash=digest(session_token),
                expires_at=now + self._session_ttl,
                user_agent=user_agent,
                address=address,
            )
            await UserRepository(session).record_login(user.id)
        return LoginResult(
            user=user,
            access_token=self._tokens.issue(user.id, user.token_version),
            expires_in=self._tokens.ttl_s,
            session_token=session_token,
            csrf_token=self._tokens.csrf_for(session_token),
        )

    async def logout(self, principal: AuthenticatedUser) -> None:
        if principal.session_id is None:
            return
        async with self._sessions() as session, session.begin():
            await AuthSessionRepository(session).delete(principal.session_id)

    async def change_password(
        self, principal: AuthenticatedUser, *, current_password: str, new_password: str
    ) -> None:
        """Raises InvalidInputError when the current password is wrong. Ends every other
        session and voids every access token issued before."""
        async with self._sessions() as session:
            user = await UserRepository(session).get(principal.id)
        if user is None or not await self._passwords.verify(user.password_hash, current_password):
            raise InvalidInputError("The current password is wrong.", code="wrong_password")
        if current_password == new_password:
            raise InvalidInputError(
                "The new password equals the current one.", code="password_unchanged"
            )
        new_hash = await self._passwords.hash(new_password)
        async with self._sessions() as session, session.begin():
            await UserRepository(session).set_password(user.id, new_hash)
            await AuthSessionRepository(session).delete_for_user(
                user.id, except_id=principal.session_id
            )
        self._principals.forget_user(user.id)

    async def get_user(self, user_id: str) -> User:
        async with self._sessions() as session:
            user = await UserRepository(session).get(user_id)
        if user is None:
            raise UnauthorizedError("The account no longer exists.", code="unauthorized")
        return user

    async def authenticate_session(self, session_token: str) -> AuthenticatedUser:
        async with self._sessions() as session:
            found = await AuthSessionRepository(session).find_live(digest(session_token), utcnow())
        if found is None:
            raise UnauthorizedError("The session has ended; log in again.", code="session_expired")
        auth_session, user = found
        return _principal(user, "session", auth_session.id)

    async def authenticate_bearer(self, token: str) -> AuthenticatedUser:
        """An API key (`sk-...`) or an access token. Raises UnauthorizedError."""
        if token.startswith(API_KEY_PREFIX):
            return await self._authenticate_api_key(token)
        # A cached token was verified when it was cached, and its entry ends no later than
        # the token's own expiry, so the signature check (a third of an SSE turn's CPU) is
        # skipped while it is cached.
        cached = self._principals.get(token)
        if cached is not None:
            return cached
        claims = self._tokens.decode(token)
        generation = self._principals.generation
        async with self._sessions() as session:
            user = await UserRepository(session).get(claims.user_id)
        if user is None or user.token_version != claims.token_version:
            raise UnauthorizedError("The access token was revoked.", code="invalid_token")
        principal = _principal(user, "token", None)
        self._principals.put(token, principal, generation, expires_at=claims.expires_at)
        return principal

    async def _authenticate_api_key(self, key: str) -> AuthenticatedUser:
        # Cached under the key's digest (the secret itself is never kept), like an access
        # token: a `/v1` request then reads no row (the lookup, with its ORM session, was most
        # of a request's start). Deleting a key drops its user's entries in this process.
        key_hash = digest(key)
        cache_key = _API_KEY_CACHE_PREFIX + key_hash
        cached = self._principals.get(cache_key)
        if cached is not None:
            return cached
        generation = self._principals.generation
        now = utcnow()
        async with self._sessions() as session:
            found = await ApiKeyRepository(session).find_by_hash(key_hash)
            if found is None:
                raise UnauthorizedError("The API key is not valid.", code="invalid_api_key")
            api_key, user = found
            expires_at = _aware(api_key.expires_at) if api_key.expires_at is not None else None
            if expires_at is not None and expires_at <= now:
                raise UnauthorizedError("The API key has expired.", code="api_key_expired")
            last = api_key.last_used_at
            if last is None or now - _aware(last) >= _KEY_TOUCH_INTERVAL:
                await ApiKeyRepository(session).touch(api_key.id, now)
                await session.commit()
        principal = _principal(user, "api_key", None)
        self._principals.put(
            cache_key,
            principal,
            generation,
            expires_at=expires_at.timestamp() if expires_at is not None else None,
        )
        return principal


def _principal(user: User, via: Via, session_id: str | None) -> AuthenticatedUser:
    if user.disabled_at is not None:
        raise ForbiddenError("This account is disabled.", code="account_disabled")
    return AuthenticatedUser(
        id=user.id,
        role=user.role.value,
        email=user.email,
        name=user.name,
        via=via,
        session_id=session_id,
    )


def _aware(value: datetime) -> datetime:
    # SQLite returns naive datetimes for timezone-aware columns; they are stored in UTC.
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
