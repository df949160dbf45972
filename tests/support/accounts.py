"""Sign in to a real backend process for integration tests and benchmarks.

    account = await signed_in(backend)                 # the admin `start_backend` registered
    account = await sign_up(base_url)                  # or register (first account = admin)
    async with connect(backend.ws_url, additional_headers=account.headers): ...
    httpx.AsyncClient(base_url=..., headers=account.headers)
    key = await account.create_api_key()                # for /v1 and the openai package

Bearer credentials (access token or API key) need no CSRF header; the cookie session is
returned too, for tests of the browser path (`cookies`, and `csrf_headers` for state changes).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import httpx

from tests.support.backend_process import TEST_EMAIL, TEST_PASSWORD, BackendProcess

_PASSWORD = "correct horse battery staple"
_numbers = itertools.count(1)


@dataclass(frozen=True, slots=True)
class Account:
    base_url: str
    user_id: str
    email: str
    role: str
    access_token: str
    cookies: dict[str, str] = field(default_factory=dict)

    @property
    def headers(self) -> dict[str, str]:
        """`Authorization: Bearer <access token>`: REST, SSE and the WebSocket accept it."""
        return {"Authorization": f"Bearer {self.access_token}"}

    @property
    def csrf_headers(self) -> dict[str, str]:
        """What a browser adds to a state-changing request made with the cookie session."""
        return {"X-CSRF-Token": self.cookies.get("csrf_token", "")}

    async def create_api_key(self, name: str = "tests") -> str:
        """A new API key (`sk-...`) of this account; raises httpx.HTTPStatusError."""
        async with httpx.AsyncClient(base_url=self.base_url, timeout=30) as client:
            response = await client.post("/api/keys", json={"name": name}, headers=self.headers)
            response.raise_for_status()
            secret = response.json()["secret"]
        assert isinstance(secret, str)
        return secret


async def sign_up(
    base_url: str, *, email: str | None = None, password: str = _PASSWORD, name: str = "Tester"
) -> Account:
    """Register an account (on a fresh backend: the admin) and return it signed in.

    Raises httpx.HTTPStatusError when registration is refused (e.g. sign-up closed)."""
    email = email or f"tester{next(_numbers)}@example.com"
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        response = await client.post(
            "/api/auth/register", json={"email": email, "password": password, "name": name}
        )
        response.raise_for_status()
        return _account(base_url, response)


async def log_in(base_url: str, email: str, password: str = _PASSWORD) -> Account:
    """Log in to an existing account (e.g. on a second backend sharing the database)."""
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        response = await client.post("/api/auth/login", json={"email": email, "password": password})
        response.raise_for_status()
        return _account(base_url, response)


async def signed_in(backend: BackendProcess) -> Account:
    """The test account that `start_backend` registered (the admin), logged in afresh: an
    access token plus the cookie session. Also works on a second backend process that shares
    the first one's data directory."""
    return await log_in(backend.base_url, TEST_EMAIL, TEST_PASSWORD)


def _account(base_url: str, response: httpx.Response) -> Account:
    body = response.json()
    user = body["user"]
    return Account(
        base_url=base_url,
        user_id=user["id"],
        email=user["email"],
        role=user["role"],
        access_token=body["access_token"],
        cookies=dict(response.cookies),
    )
