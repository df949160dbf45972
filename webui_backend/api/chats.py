"""Chats over REST: list, create, open, change, delete, search, export/import, share links."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Query, status
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from webui_backend.api.openapi_responses import error_responses
from webui_backend.db.models_admin import Share
from webui_backend.deps import CurrentUser, ServicesDep
from webui_backend.schemas.chats import (
    ChatCreate,
    ChatDetailOut,
    ChatPageOut,
    ChatPatch,
    ChatSummary,
    ImportOut,
    MessageOut,
    SearchHitOut,
    SearchOut,
    ShareList,
    ShareOut,
    TagList,
    TagOut,
)
from webui_backend.services.chat_import_export import export_json, export_markdown, parse_import
from webui_backend.services.chats import ChatChanges, ChatItem
from webui_backend.services.shares import ShareService

router = APIRouter(prefix="/api/chats", tags=["chats"])


def _errors(*codes: int) -> dict[int | str, dict[str, object]]:
    return error_responses(401, 403, *codes)


def summary_of(item: ChatItem) -> ChatSummary:
    chat = item.chat
    return ChatSummary(
        id=chat.id,
        title=chat.title,
        current_message_id=chat.current_message_id,
        pinned=chat.pinned,
        archived=chat.archived,
        tags=item.tags,
        created_at=chat.created_at,
        updated_at=chat.updated_at,
    )


@router.get("", response_model=ChatPageOut, responses=_errors(400, 422))
async def list_chats(
    services: ServicesDep,
    user: CurrentUser,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    archived: bool = False,
    pinned: bool | None = None,
    tag: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
) -> ChatPageOut:
    """Pinned chats first, then by last activity (newest first). Pass `next_cursor` back as
    `cursor` for the next page."""
    page = await services.chats.list_page(
        user.id, cursor=cursor, limit=limit, archived=archived, pinned=pinned, tag=tag
    )
    return ChatPageOut(items=[summary_of(i) for i in page.items], next_cursor=page.next_cursor)


@router.post(
    "", response_model=ChatSummary, status_code=status.HTTP_201_CREATED, responses=_errors(400, 422)
)
async def create_chat(body: ChatCreate, services: ServicesDep, user: CurrentUser) -> ChatSummary:
    item = await services.chats.create_tagged_chat(user.id, title=body.title, tags=body.tags)
    return summary_of(item)


@router.get("/search", response_model=SearchOut, responses=_errors(400, 422))
async def search_chats(
    services: ServicesDep,
    user: CurrentUser,
    q: Annotated[str, Query(min_length=1, max_length=200)],
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> SearchOut:
    """Full-text search over your chat titles and messages, newest first: every word must
    occur as a whole word; end a word with `*` to match it as a prefix (`prog*`)."""
    hits = await services.chats.search(user.id, q, limit=limit)
    return SearchOut(
        items=[
            SearchHitOut(
                chat_id=h.chat_id,
                title=h.title,
                updated_at=h.updated_at,
                message_id=h.message_id,
                snippet=h.snippet,
            )
            for h in hits
        ]
    )


@router.get("/tags", response_model=TagList, responses=_errors())
async def list_tags(services: ServicesDep, user: CurrentUser) -> TagList:
    tags = await services.chats.list_tags(user.id)
    return TagList(items=[TagOut(name=name, chats=count) for name, count in tags])


@router.post(
    "/import",
    response_model=ImportOut,
    status_code=status.HTTP_201_CREATED,
    responses=_errors(400, 413, 422),
)
async def import_chats(
    services: ServicesDep,
    user: CurrentUser,
    document: Annotated[
        Any,
        Body(
            description="Our export (`format: webui-stack.chat`), one Open WebUI chat export "
            'object, or a list of either (Open WebUI\'s "export all chats").',
        ),
    ],
) -> ImportOut:
    chats = parse_import(document)
    created = await services.accounts.importer.import_chats(user.id, chats)
    items = [
        summary_of(ChatItem(chat=c, tags=parsed.tags))
        for c, parsed in zip(created, chats, strict=True)
    ]
    return ImportOut(items=items)


@router.get("/{chat_id}", response_model=ChatDetailOut, responses=_errors(404))
async def get_chat(chat_id: str, services: ServicesDep, user: CurrentUser) -> ChatDetailOut:
    detail = await services.chats.get_chat(user.id, chat_id)
    summary = summary_of(ChatItem(chat=detail.chat, tags=detail.tags))
    return ChatDetailOut(
        **summary.model_dump(),
        messages=[MessageOut.model_validate(m, from_attributes=True) for m in detail.messages],
        active_branch=detail.active_branch,
    )


@router.patch("/{chat_id}", response_model=ChatSummary, responses=_errors(400, 404, 422))
async def update_chat(
    chat_id: str, body: ChatPatch, services: ServicesDep, user: CurrentUser
) -> ChatSummary:
    """Rename, pin, archive, set tags, or switch the active branch (`current_message_id`:
    any message of the chat; the branch then runs to the newest leaf below it)."""
    item = await services.chats.update_chat(
        user.id,
        chat_id,
        ChatChanges(
            title=body.title,
            pinned=body.pinned,
            archived=body.archived,
            tags=body.tags,
            current_message_id=body.current_message_id,
        ),
    )
    return summary_of(item)


@router.delete("/{chat_id}", status_code=status.HTTP_204_NO_CONTENT, responses=_errors(404))
async def delete_chat(chat_id: str, services: ServicesDep, user: CurrentUser) -> None:
    await services.chats.delete_chat(user.id, chat_id)


@router.get(
    "/{chat_id}/export",
    responses={
        200: {"content": {"application/json": {}, "text/markdown": {}}},
        **_errors(404, 422),
    },
    response_class=Response,
)
async def export_chat(
    chat_id: str,
    services: ServicesDep,
    user: CurrentUser,
    format: Literal["json", "markdown"] = "json",
) -> Response:
    """The whole tree as JSON (importable here), or the active branch as Markdown."""
    detail = await services.chats.get_chat(user.id, chat_id)
    filename = f"chat-{detail.chat.id}"
    if format == "markdown":
        return PlainTextResponse(
            export_markdown(detail),
            media_type="text/markdown; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{filename}.md"'},
        )
    return JSONResponse(
        export_json(detail),
        headers={"Content-Disposition": f'attachment; filename="{filename}.json"'},
    )


def _share_out(shares: ShareService, share: Share) -> ShareOut:
    return ShareOut(
        id=share.id,
        url=shares.url_for(share.id),
        chat_id=share.chat_id,
        title=share.title,
        created_at=share.created_at,
    )


@router.post(
    "/{chat_id}/shares",
    response_model=ShareOut,
    status_code=status.HTTP_201_CREATED,
    responses=_errors(404),
)
async def create_share(chat_id: str, services: ServicesDep, user: CurrentUser) -> ShareOut:
    """Snapshot the active branch behind an unguessable link; later messages are not shown."""
    shares = services.accounts.shares
    return _share_out(shares, await shares.create(user.id, chat_id))


@router.get("/{chat_id}/shares", response_model=ShareList, responses=_errors(404))
async def list_shares(chat_id: str, services: ServicesDep, user: CurrentUser) -> ShareList:
    shares = services.accounts.shares
    return ShareList(
        items=[_share_out(shares, s) for s in await shares.list_for_chat(user.id, chat_id)]
    )
