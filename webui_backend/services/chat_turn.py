"""One conversation turn: store the user message, generate the reply on the server, store it.

`start_turn` commits the user message and an empty `streaming` assistant row in one transaction
and hands generation to a server-owned task, which calls the runner as soon as the history is
read, while that transaction commits; it returns once the commit is done. Callers watch the
turn through the hub; no socket owns it, so a closed tab loses nothing.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from model_runner.client import ChatMessage, GenerationOptions
from webui_backend.db.models import new_id, utcnow
from webui_backend.db.transactions import Transactions
from webui_backend.db.writer_thread import set_result_threadsafe
from webui_backend.errors import InvalidInputError, NotFoundError, PayloadTooLargeError
from webui_backend.observability.tracing import TurnOrigin
from webui_backend.services.background import BackgroundTasks
from webui_backend.services.generation import ReplyGenerator, TurnPlan
from webui_backend.services.model_catalog import ModelCatalog
from webui_backend.services.new_turn import NewTurn, TurnRequest, request_digest
from webui_backend.services.turn_followups import FollowUpRequest, FollowUps
from webui_backend.services.turn_handle import TurnHandle
from webui_backend.services.turn_hub import TurnHub
from webui_backend.services.turn_keys import (
    TurnKeys,
    TurnKeyTakenError,
    digest_of,
)
from webui_backend.services.turn_policy import TitleWriter, TurnPolicy, apply_model_settings

log = logging.getLogger(__name__)


class ChatTurnService:
    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        transactions: Transactions,
        generator: ReplyGenerator,
        hub: TurnHub,
        catalog: ModelCatalog,
        tasks: BackgroundTasks,
        max_message_chars: int,
        default_model: str = "",
        policy: TurnPolicy | None = None,
        titles: TitleWriter | None = None,
    ) -> None:
        self._sessions = sessions
        self._transactions = transactions
        self._generator = generator
        self._hub = hub
        self._catalog = catalog
        self._tasks = tasks
        self._max_message_chars = max_message_chars
        self._default_model = default_model
        self._policy = policy
        self._titles = titles
        self._keys = TurnKeys(sessions)
        self._followups = FollowUps(sessions, catalog, default_model)

    async def start_turn(self, user_id: str, request: TurnRequest) -> TurnHandle:
        """Validate, commit the user message, and start generating.

        Raises InvalidInputError, PayloadTooLargeError, NotFoundError (chat or parent not
        found for this user) or ModelNotFoundError; nothing is stored when it raises.
        """
        self._validate(request)
        # Shielded: once the user message is committed its reply must be generated, even if
        # the request that sent it is cancelled (a socket closing) meanwhile.
        return await asyncio.shield(self._start_turn(user_id, request))

    async def _start_turn(self, user_id: str, request: TurnRequest) -> TurnHandle:
        digest = request_digest(request)
        if request.turn_key is not None:
            earlier = await self._keys.find(user_id, request.turn_key, digest)
            if earlier is not None:
                return earlier
        model = request.model or self._default_model
        if self._policy is not None:
            await self._policy.admit(user_id, model)
        await self._catalog.check(model)
        try:
            return await self._store_and_launch(user_id, request, model, digest)
        except TurnKeyTakenError:
            # A concurrent send with the same key won the insert; answer with its turn.
            assert request.turn_key is not None
            earlier = await self._keys.find(user_id, request.turn_key, digest)
            if earlier is None:
                raise
            return earlier

    async def _store_and_launch(
        self, user_id: str, request: TurnRequest, model: str, digest: str
    ) -> TurnHandle:
        """Commit the user message and an empty reply, and start generating it.

        The runner is called as soon as the history is known (at once for a new chat, after
        the transaction's reads otherwise) while the transaction goes on inserting and
        committing, so that the commit is not on the way to the first token; the generator
        writes nothing of the reply before the commit, and drops the reply when it fails.
        A send with a turn key waits for its commit instead. The turn is accepted (returned)
        only once committed.
        """
        new_turn = NewTurn(
            user_id=user_id,
            request=request,
            model=model,
            digest=digest,
            chat_id=request.chat_id or new_id(),
            user_message_id=new_id(),
            reply_id=new_id(),
            at=utcnow(),
        )
        loop = asyncio.get_running_loop()
        history: asyncio.Future[list[ChatMessage]] = loop.create_future()
        known = new_turn.history_without_reads()
        announce: Callable[[list[ChatMessage]], None]
        if known is not None:
            history.set_result(known)
            announce = _known  # no wake-up of the loop from the writer for nothing
        else:
            announce = functools.partial(set_result_threadsafe, loop, history)
        stored = asyncio.ensure_future(
            self._transactions.run_writes(functools.partial(new_turn.store, announce=announce))
        )
        if request.turn_key is not None:
            # Racing sends with one key: the key's insert picks the one that generates, so
            # the runner never sees the other (a retry after a commit is found up front).
            handle = await stored
            await self._launch(user_id, handle, model, await history, request.options)
            return handle
        if known is None:
            await asyncio.wait((history, stored), return_when=asyncio.FIRST_COMPLETED)
        if not history.done():
            history.cancel()
            # Refused before its history was read (chat or parent not found): the
            # transaction's error is the answer, and the runner was never called.
            await stored
            raise AssertionError("the turn's transaction ended without reading its history")
        try:
            await self._launch(
                user_id,
                new_turn.handle,
                model,
                history.result(),
                request.options,
                committed=stored,
            )
        finally:
            # Whether or not generation started, the caller learns how the transaction ended.
            handle = await stored
        return handle

    async def _launch(
        self,
        user_id: str,
        handle: TurnHandle,
        model: str,
        history: list[ChatMessage],
        options: GenerationOptions,
        *,
        committed: Awaitable[object] | None = None,
        base_content: str = "",
        first_seq: int = 1,
    ) -> None:
        if self._policy is not None:
            settings = await self._policy.model_settings(model)
            history, options = apply_model_settings(history, options, settings)
        await self._hub.open(handle.turn_id, user_id, first_seq=first_seq)
        plan = TurnPlan(
            turn_id=handle.turn_id,
            chat_id=handle.chat_id,
            model=model,
            history=history,
            options=options,
            base_content=base_content,
            first_seq=first_seq,
            # Captured here, in the request or frame that starts the turn: the generation task
            # outlives it and takes its request id and parent span from the plan.
            origin=TurnOrigin.capture(),
            committed=committed,
        )
        self._tasks.spawn(self._generate(plan, user_id, handle), name=f"turn-{handle.turn_id}")

    async def _generate(self, plan: TurnPlan, user_id: str, handle: TurnHandle) -> None:
        await self._generator.run(plan)
        if handle.created_chat and self._titles is not None:
            # The model names the chat after the first exchange, in its own task.
            self._tasks.spawn(
                self._titles.write_title(user_id, handle.chat_id, plan.model),
                name=f"title-{handle.chat_id}",
            )

    async def regenerate_turn(
        self, user_id: str, reply_id: str, request: FollowUpRequest
    ) -> TurnHandle:
        """Generate a new reply as a sibling of `reply_id` (same user message) and make it
        the chat's active branch. Raises NotFoundError (reply_not_found), ModelNotFoundError.
        """
        digest = followup_digest("regenerate", reply_id, request)
        if request.turn_key is not None:
            earlier = await self._keys.find(user_id, request.turn_key, digest)
            if earlier is not None:
                return earlier
        if self._policy is not None:
            await self._policy.admit(user_id, request.model or self._default_model)
        try:
            stored = await self._followups.regenerate(user_id, reply_id, request, digest)
        except TurnKeyTakenError:
            assert request.turn_key is not None
            earlier = await self._keys.find(user_id, request.turn_key, digest)
            if earlier is None:
                raise
            return earlier
        await self._launch(user_id, stored.handle, stored.model, stored.history, request.options)
        return stored.handle

    async def continue_turn(
        self, user_id: str, reply_id: str, request: FollowUpRequest
    ) -> TurnHandle:
        """Generate more text into an interrupted, cancelled or length-limited reply; the new
        events continue its seq numbering. Raises NotFoundError (reply_not_found) or
        ConflictError (not_continuable: the reply is complete or still generating)."""
        if self._policy is not None:
            await self._policy.admit(user_id, request.model or self._default_model)
        stored = await self._followups.reopen(user_id, reply_id, request)
        await self._launch(
            user_id,
            stored.handle,
            stored.model,
            stored.history,
            request.options,
            base_content=stored.base_content,
            first_seq=stored.first_seq,
        )
        return stored.handle

    async def stop_turn(self, user_id: str, turn_id: str) -> bool:
        """Ask the worker generating `turn_id` to stop it (the partial reply is stored as
        `cancelled`). False when the reply already ended; NotFoundError if it is not yours."""
        owner = await self._hub.live_owner(turn_id)
        if owner == user_id:
            return await self._hub.request_stop(turn_id)
        if owner is None and await self._followups.owns_reply(user_id, turn_id):
            return False
        raise NotFoundError("No reply with this id.", code="not_found")

    def _validate(self, request: TurnRequest) -> None:
        if not request.content.strip():
            raise InvalidInputError("The message is empty.", code="empty_message")
        if len(request.content) > self._max_message_chars:
            raise PayloadTooLargeError(
                f"The message has {len(request.content)} characters; "
                f"the limit is {self._max_message_chars}.",
                code="message_too_long",
            )


def _known(history: list[ChatMessage]) -> None:
    """`announce` for a history the caller already has."""


def followup_digest(kind: str, reply_id: str, request: FollowUpRequest) -> str:
    return digest_of(kind, reply_id, request.model)
