"""The stream hub across several workers, on Redis.

Per turn, a Redis Stream holds the replayable events (entry id `<seq>-0`, so `XREAD` after
`<seq>-0` is exactly "the events after seq"; `MAXLEN ~` bounds it; it expires a while after the
turn ends) and a hash holds the owner, the generating worker and whether it finished. Stop
requests travel on one pub/sub channel that every worker listens to. Each worker refreshes a
heartbeat key, so a turn whose worker died is not mistaken for a live one.

The worker that generates a turn also keeps it in a local `TurnLog`: its own subscribers read
from memory, and publishing costs an append plus a share of one pipelined `XADD` batch per
event-loop pass, never a round trip per token.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Sequence
from typing import TypeVar

from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from webui_backend.errors import NotFoundError
from webui_backend.services.turn_events import (
    TurnDelta,
    TurnEvent,
    TurnFinished,
    decode_event,
    encode_event,
)
from webui_backend.services.turn_hub import ReplayRangeLostError, TurnLog

log = logging.getLogger(__name__)


T = TypeVar("T")


async def _done(value: Awaitable[T] | T) -> T:
    """redis-py types its commands as sync-or-async; on the asyncio client they are awaitable."""
    if inspect.isawaitable(value):
        return await value
    return value


class RedisTurnHub:
    def __init__(
        self,
        url: str,
        *,
        prefix: str = "webui:",
        max_events_per_turn: int = 4096,
        retain_finished_s: float = 300.0,
        live_ttl_s: float = 3600.0,
        heartbeat_s: float = 2.0,
        block_ms: int = 1000,
    ) -> None:
        self._url = url
        self._prefix = prefix
        self._max_events = max_events_per_turn
        self._retain_s = int(max(retain_finished_s, 1))
        self._live_ttl_s = int(max(live_ttl_s, 1))
        self._heartbeat_s = heartbeat_s
        self._block_ms = block_ms
        self.worker_id = uuid.uuid4().hex[:12]
        self._redis: Redis | None = None
        self._local: dict[str, TurnLog] = {}
        self._pending: list[tuple[str, TurnEvent]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._tasks: list[asyncio.Task[None]] = []

    # -- keys ----------------------------------------------------------------------------
    def _events_key(self, turn_id: str) -> str:
        return f"{self._prefix}turn:{turn_id}:events"

    def _meta_key(self, turn_id: str) -> str:
        return f"{self._prefix}turn:{turn_id}:meta"

    def _worker_key(self, worker_id: str) -> str:
        return f"{self._prefix}worker:{worker_id}"

    @property
    def _live_key(self) -> str:
        return f"{self._prefix}live"

    @property
    def _control_channel(self) -> str:
        return f"{self._prefix}control"

    @property
    def redis(self) -> Redis:
        if self._redis is None:
            raise RuntimeError("RedisTurnHub.start() was not called")
        return self._redis

    # -- lifecycle -----------------------------------------------------------------------
    async def start(self) -> None:
        self._redis = Redis.from_url(self._url, decode_responses=False)
        await self._redis.ping()
        await self._beat()
        log.info("redis hub: worker %s in process %d", self.worker_id, os.getpid())
        pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe(self._control_channel)
        self._tasks = [
            asyncio.create_task(self._listen(pubsub), name="redis-hub-control"),
            asyncio.create_task(self._heartbeat(), name="redis-hub-heartbeat"),
        ]

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self._flusher is not None:
            with contextlib.suppress(Exception):
                await self._flusher
        if self._redis is not None:
            with contextlib.suppress(RedisError):
                await self._redis.delete(self._worker_key(self.worker_id))
            await self._redis.aclose()
            self._redis = None

    async def _beat(self) -> None:
        ttl_ms = int(self._heartbeat_s * 3000)
        await self.redis.set(self._worker_key(self.worker_id), b"1", px=ttl_ms)

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self._heartbeat_s)
            try:
                await self._beat()
            except RedisError:
                log.warning("redis hub heartbeat failed", exc_info=True)

    async def _listen(self, pubsub: object) -> None:
        from redis.asyncio.client import PubSub

        assert isinstance(pubsub, PubSub)
        try:
            async for message in pubsub.listen():
                data = message.get("data")
                if isinstance(data, bytes):
                    self._stop_local(data.decode())
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    # -- publishing ----------------------------------------------------------------------
    async def open(self, turn_id: str, owner_id: str, *, first_seq: int = 1) -> None:
        self._evict_expired()
        self._local[turn_id] = TurnLog(owner_id, first_seq, self._max_events)
        meta = self._meta_key(turn_id)
        pipe = self.redis.pipeline(transaction=True)
        # A continued reply starts a new log: older entries are in the stored checkpoint.
        pipe.delete(self._events_key(turn_id))
        pipe.hset(
            meta,
            mapping={
                "owner": owner_id,
                "worker": self.worker_id,
                "first_seq": first_seq,
                "closed": 0,
            },
        )
        pipe.expire(meta, self._live_ttl_s)
        pipe.sadd(self._live_key, turn_id)
        await pipe.execute()

    def publish(self, turn_id: str, event: TurnEvent) -> None:
        local = self._local.get(turn_id)
        if local is None or local.closed_at is not None:
            return
        local.append(event)
        self._pending.append((turn_id, event))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush(), name="redis-hub-flush")

    async def _flush(self) -> None:
        """Send everything published so far as one pipeline per pass, until nothing is left."""
        try:
            # Yield once so that every publish of this loop pass joins the first batch.
            await asyncio.sleep(0)
            while self._pending:
                batch, self._pending = self._pending, []
                pipe = self.redis.pipeline(transaction=False)
                turns: set[str] = set()
                for turn_id, event in batch:
                    key = self._events_key(turn_id)
                    pipe.xadd(
                        key,
                        {"e": encode_event(event)},
                        id=f"{event.seq}-0",
                        maxlen=self._max_events,
                        approximate=True,
                    )
                    turns.add(turn_id)
                for turn_id in turns:
                    pipe.expire(self._events_key(turn_id), self._live_ttl_s)
                try:
                    await pipe.execute(raise_on_error=False)
                except RedisError:
                    # Local subscribers still get every event, and the stored checkpoint
                    # covers resumes elsewhere; keep generating.
                    log.warning("redis hub could not publish %d event(s)", len(batch))
        finally:
            self._flusher = None

    async def close(self, turn_id: str) -> None:
        local = self._local.get(turn_id)
        if local is None or local.closed_at is not None:
            return
        while self._flusher is not None:
            await asyncio.shield(self._flusher)
        local.finish()
        meta = self._meta_key(turn_id)
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(meta, "closed", "1")
        pipe.expire(meta, self._retain_s)
        pipe.expire(self._events_key(turn_id), self._retain_s)
        pipe.srem(self._live_key, turn_id)
        try:
            await pipe.execute()
        except RedisError:
            log.warning("redis hub could not close turn %s", turn_id, exc_info=True)

    # -- subscribing ---------------------------------------------------------------------
    async def subscribe(
        self, turn_id: str, owner_id: str, *, after_seq: int = 0
    ) -> AsyncIterator[Sequence[TurnEvent]]:
        local = self._local.get(turn_id)
        if local is not None:
            if local.owner_id != owner_id:
                raise NotFoundError("No live reply with this id.")
            async for batch in local.read(max(after_seq, 0)):
                yield batch
            return
        async for batch in self._subscribe_remote(turn_id, owner_id, max(after_seq, 0)):
            yield batch

    async def _subscribe_remote(
        self, turn_id: str, owner_id: str, cursor: int
    ) -> AsyncIterator[Sequence[TurnEvent]]:
        meta = await _done(self.redis.hgetall(self._meta_key(turn_id)))
        if not meta or meta.get(b"owner", b"").decode() != owner_id:
            raise NotFoundError("No live reply with this id.")
        if cursor + 1 < int(meta.get(b"first_seq", b"1")):
            raise ReplayRangeLostError(cursor)
        key = self._events_key(turn_id)
        worker = meta.get(b"worker", b"").decode()
        closed_seen = False
        while True:
            response = await self.redis.xread(
                {key: f"{cursor}-0"}, count=self._max_events, block=self._block_ms
            )
            entries = response[0][1] if response else []
            if entries:
                batch = [decode_event(fields[b"e"]) for _id, fields in entries]
                if batch[0].seq != cursor + 1:
                    raise ReplayRangeLostError(cursor)
                cursor = batch[-1].seq
                yield batch
                if type(batch[-1]) is TurnFinished:
                    return
                continue
            # Nothing new for a while: finished, expired, or its worker died.
            state: object = await _done(self.redis.hget(self._meta_key(turn_id), "closed"))
            if state is None or closed_seen:
                return
            if state == b"1":
                closed_seen = True  # read once more: the finished event may have just landed
                continue
            if not await self.redis.exists(self._worker_key(worker)):
                return

    # -- liveness and control ------------------------------------------------------------
    async def live_owner(self, turn_id: str) -> str | None:
        local = self._local.get(turn_id)
        if local is not None:
            return local.owner_id if local.closed_at is None else None
        meta = await _done(self.redis.hgetall(self._meta_key(turn_id)))
        if not meta or meta.get(b"closed") != b"0":
            return None
        if not await self.redis.exists(self._worker_key(meta.get(b"worker", b"").decode())):
            return None
        owner: bytes = meta[b"owner"]
        return owner.decode()

    def stop_signal(self, turn_id: str) -> asyncio.Future[None]:
        local = self._local[turn_id]
        if local.stop is None:
            local.stop = asyncio.get_running_loop().create_future()
        return local.stop

    def _stop_local(self, turn_id: str) -> bool:
        local = self._local.get(turn_id)
        if local is None or local.closed_at is not None:
            return False
        stop = self.stop_signal(turn_id)
        if not stop.done():
            stop.set_result(None)
        return True

    async def request_stop(self, turn_id: str) -> bool:
        if self._stop_local(turn_id):
            return True
        if await self.live_owner(turn_id) is None:
            return False
        await self.redis.publish(self._control_channel, turn_id.encode())
        return True

    def live_turn_ids(self) -> list[str]:
        return [tid for tid, local in self._local.items() if local.closed_at is None]

    async def live_turn_ids_anywhere(self) -> list[str]:
        members = [m.decode() for m in await _done(self.redis.smembers(self._live_key))]
        live: list[str] = []
        for turn_id in members:
            if await self.live_owner(turn_id) is not None:
                live.append(turn_id)
            else:
                await _done(self.redis.srem(self._live_key, turn_id))
        return live

    # -- turns of a dead worker -----------------------------------------------------------
    async def orphan_tail(self, turn_id: str, after_seq: int) -> tuple[str, int]:
        entries = await self.redis.xrange(self._events_key(turn_id), min=f"{after_seq + 1}-0")
        parts: list[str] = []
        seq = after_seq
        for _id, fields in entries:
            event = decode_event(fields[b"e"])
            if event.seq != seq + 1 or type(event) is TurnFinished:
                break
            seq = event.seq
            if type(event) is TurnDelta:
                parts.append(event.text)
        return "".join(parts), seq

    async def finish_orphan(self, turn_id: str, event: TurnFinished) -> None:
        meta = self._meta_key(turn_id)
        closed: object = await _done(self.redis.hget(meta, "closed"))
        if closed is not None and closed != b"0":
            return
        if closed is not None:
            try:
                await self.redis.xadd(
                    self._events_key(turn_id),
                    {"e": encode_event(event)},
                    id=f"{event.seq}-0",
                    maxlen=self._max_events,
                    approximate=True,
                )
            except ResponseError:
                # The log already holds events past `event.seq` (text the stored reply does
                # not have): closing it sends watchers to the stored reply, which then wins.
                log.info("turn %s: hub log is past seq %d; closing it only", turn_id, event.seq)
        pipe = self.redis.pipeline(transaction=True)
        if closed is not None:
            pipe.hset(meta, "closed", "1")
            pipe.expire(meta, self._retain_s)
            pipe.expire(self._events_key(turn_id), self._retain_s)
        pipe.srem(self._live_key, turn_id)
        await pipe.execute()

    def _evict_expired(self) -> None:
        deadline = time.monotonic() - self._retain_s
        expired = [
            tid
            for tid, local in self._local.items()
            if local.closed_at is not None and local.closed_at < deadline
        ]
        for tid in expired:
            del self._local[tid]
