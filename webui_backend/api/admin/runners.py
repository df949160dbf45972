"""Administering model runners: register by address, health, loaded models, load/unload."""

from __future__ import annotations

from fastapi import APIRouter, status

from webui_backend.api.openapi_responses import error_responses
from webui_backend.deps import AdminUser, ServicesDep
from webui_backend.schemas.admin import (
    RunnerCreate,
    RunnerList,
    RunnerLoadOut,
    RunnerLoadResult,
    RunnerModelAction,
    RunnerModelOut,
    RunnerOut,
    RunnerUnloadResult,
)
from webui_backend.services.admin_runners import RunnerStatus

router = APIRouter(prefix="/runners", tags=["admin: runners"])
_ERRORS = error_responses(400, 404, 409, 422, 502, 503)


def runner_out(status_: RunnerStatus) -> RunnerOut:
    load = status_.load
    return RunnerOut(
        id=status_.id,
        name=status_.name,
        address=status_.address,
        healthy=status_.healthy,
        models=[
            RunnerModelOut(
                id=m.id,
                backend=m.backend,
                state=m.state,
                max_context_tokens=m.max_context_tokens,
                is_default=m.is_default,
            )
            for m in status_.models
        ],
        load=RunnerLoadOut(
            running=load.running,
            queued=load.queued,
            max_running=load.max_running,
            max_queued=load.max_queued,
            draining=load.draining,
        )
        if load is not None
        else None,
        error=status_.error,
    )


@router.get("", response_model=RunnerList)
async def list_runners(admin: AdminUser, services: ServicesDep) -> RunnerList:
    """Every registered runner, probed now: health, models, load."""
    return RunnerList(items=[runner_out(r) for r in await services.accounts.runners.list()])


@router.post("", response_model=RunnerOut, status_code=status.HTTP_201_CREATED, responses=_ERRORS)
async def register_runner(body: RunnerCreate, admin: AdminUser, services: ServicesDep) -> RunnerOut:
    """Register a runner by gRPC address; chat turns may use it at once."""
    registered = await services.accounts.runners.register(
        admin, name=body.name, address=body.address
    )
    return runner_out(registered)


@router.get("/{runner_id}", response_model=RunnerOut, responses=_ERRORS)
async def get_runner(runner_id: str, admin: AdminUser, services: ServicesDep) -> RunnerOut:
    return runner_out(await services.accounts.runners.get(runner_id))


@router.delete("/{runner_id}", status_code=status.HTTP_204_NO_CONTENT, responses=_ERRORS)
async def remove_runner(runner_id: str, admin: AdminUser, services: ServicesDep) -> None:
    await services.accounts.runners.remove(admin, runner_id)


@router.post("/{runner_id}/load", response_model=RunnerLoadResult, responses=_ERRORS)
async def load_model(
    runner_id: str, body: RunnerModelAction, admin: AdminUser, services: ServicesDep
) -> RunnerLoadResult:
    """Load a model on this runner and wait until it is ready."""
    state = await services.accounts.runners.load_model(admin, runner_id, body.model)
    return RunnerLoadResult(model=body.model, state=state)


@router.post("/{runner_id}/unload", response_model=RunnerUnloadResult, responses=_ERRORS)
async def unload_model(
    runner_id: str, body: RunnerModelAction, admin: AdminUser, services: ServicesDep
) -> RunnerUnloadResult:
    aborted = await services.accounts.runners.unload_model(admin, runner_id, body.model)
    return RunnerUnloadResult(model=body.model, aborted_requests=aborted)
