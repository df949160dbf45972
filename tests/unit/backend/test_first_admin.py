"""The first account becomes the administrator: exactly one, even when sign-ups race."""

from __future__ import annotations

import asyncio

from webui_backend.container import AppServices
from webui_backend.db.models import UserRole


async def test_simultaneous_first_sign_ups_make_one_admin(services: AppServices) -> None:
    users = await asyncio.gather(
        *(
            services.auth.register(
                email=f"racer{i}@example.com", password="correct horse 1", name=f"R{i}"
            )
            for i in range(6)
        )
    )
    roles = [user.role for user in users]
    assert roles.count(UserRole.ADMIN) == 1
    later = await services.auth.register(
        email="later@example.com", password="correct horse 1", name="L"
    )
    assert later.role is not UserRole.ADMIN
