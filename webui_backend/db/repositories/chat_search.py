"""Full-text search over one user's chat titles and user/assistant messages.

One contract, one implementation per dialect (picked from the session's bind):

- SQLite: the FTS5 table `chat_search`, kept in step by triggers (migration 0002);
- PostgreSQL: expression GIN indexes on `message.content` and `chat.title` with the text
  search configuration `webui_search` (migration 0004).

Both match every term as a whole word, case- and accent-insensitively, a term marked `prefix`
as a prefix, and answer newest first, one hit per matching title or message.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import DateTime, TextualSelect, text
from sqlalchemy.ext.asyncio import AsyncSession


@dataclass(frozen=True, slots=True)
class SearchTerm:
    """One word the user typed: letters and digits only, so no query syntax gets through."""

    word: str
    prefix: bool = False


@dataclass(frozen=True, slots=True)
class SearchHit:
    chat_id: str
    title: str
    updated_at: datetime
    # None when the title matched.
    message_id: str | None
    # The matching text with the matched words in [brackets].
    snippet: str


class ChatSearchRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def search(
        self, user_id: str, terms: Sequence[SearchTerm], *, limit: int
    ) -> list[SearchHit]:
        """Titles and messages of the user's chats that contain every term, newest first.

        Newest-first (not relevance) lets the database stop after `limit` rows even for a word
        that occurs in half a million messages; ranking would score every match first."""
        if self._session.get_bind().dialect.name == "postgresql":
            statement, params = POSTGRESQL_SEARCH, {"q": tsquery(terms)}
        else:
            statement, params = SQLITE_SEARCH, {"q": fts5_match(terms, user_id)}
        result = await self._session.execute(
            statement, {**params, "user_id": user_id, "limit": limit}
        )
        return [
            SearchHit(
                chat_id=row.chat_id,
                title=row.title,
                updated_at=row.updated_at,
                message_id=row.message_id,
                snippet=row.snippet,
            )
            for row in result
        ]


def fts5_match(terms: Sequence[SearchTerm], user_id: str) -> str:
    """The FTS5 MATCH expression: every term quoted (`"prog"*` for a prefix) in the body
    column, AND the owner's token in the keys column (see migration 0002), so the match is
    narrowed to the user's rows inside the index."""
    body = " ".join(f'"{t.word}"' + ("*" if t.prefix else "") for t in terms)
    return f'({{body}} : ({body})) AND (keys : "u{user_id.replace("-", "")}")'


def tsquery(terms: Sequence[SearchTerm]) -> str:
    """The `to_tsquery` text: every term quoted as a lexeme (`'prog':*` for a prefix), all
    required. Quotes and backslashes are escaped even though a term has none."""

    def lexeme(word: str) -> str:
        return "'" + word.replace("\\", "\\\\").replace("'", "''") + "'"

    return " & ".join(lexeme(t.word) + (":*" if t.prefix else "") for t in terms)


SQLITE_SEARCH_SQL = (
    "SELECT s.chat_id, c.title, c.updated_at, s.message_id, "
    "snippet(chat_search, 0, '[', ']', '…', 12) AS snippet "
    "FROM chat_search AS s JOIN chat AS c ON c.id = s.chat_id "
    # The owner's token narrows the match inside the index; the join re-checks ownership.
    "WHERE chat_search MATCH :q AND c.user_id = :user_id "
    "ORDER BY s.rowid DESC LIMIT :limit"
)


# The documents must be written exactly as the indexes of migration 0004 are, or the planner
# cannot use them: punctuation and white space become single spaces (words split as FTS5's
# unicode61 tokenizer and `search_terms` split them, so `example.com` is two words, not one
# host token), then the `webui_search` configuration lower-cases and unaccents.
def _document(column: str) -> str:
    return (
        "to_tsvector('webui_search'::regconfig, "
        f"regexp_replace({column}, '[[:punct:][:space:]]+', ' ', 'g'))"
    )


# An immutable function of a parameter: folded to a constant when the statement is planned.
_QUERY = "to_tsquery('webui_search'::regconfig, :q)"
# The conditions the partial indexes serve (their WHERE clauses and expressions), and one
# more: a reply still streaming is not a hit, as on SQLite, where it is indexed only once it
# stops (migration 0005).
MESSAGE_MATCH_SQL = (
    f"m.role IN ('user', 'assistant') AND m.content <> '' AND {_document('m.content')} @@ {_QUERY}"
    " AND m.status <> 'streaming'"
)
TITLE_MATCH_SQL = f"c.title <> '' AND {_document('c.title')} @@ {_QUERY}"
_HEADLINE_OPTIONS = (
    'StartSel="[", StopSel="]", MaxWords=12, MinWords=4, ShortWord=0, '
    'MaxFragments=1, FragmentDelimiter="…"'
)

# Messages in the order they were written, titles by their chat's last activity, each side
# cut at `limit` before they are merged; the snippets are built for the returned rows only
# (ts_headline parses the text again).
POSTGRESQL_SEARCH_SQL = (
    "SELECT hit.chat_id, c.title, c.updated_at, hit.message_id, "
    f"ts_headline('webui_search'::regconfig, hit.body, {_QUERY}, '{_HEADLINE_OPTIONS}') "
    "AS snippet FROM ("
    "(SELECT m.chat_id, m.id AS message_id, m.content AS body, m.created_at AS at "
    "FROM message AS m JOIN chat AS c ON c.id = m.chat_id "
    f"WHERE c.user_id = :user_id AND {MESSAGE_MATCH_SQL} "
    "ORDER BY m.created_at DESC, m.id DESC LIMIT :limit) "
    "UNION ALL "
    "(SELECT c.id, NULL, c.title, c.updated_at FROM chat AS c "
    f"WHERE c.user_id = :user_id AND {TITLE_MATCH_SQL} "
    "ORDER BY c.updated_at DESC, c.id DESC LIMIT :limit)"
    ") AS hit JOIN chat AS c ON c.id = hit.chat_id "
    "ORDER BY hit.at DESC, hit.message_id DESC NULLS LAST LIMIT :limit"
)

SQLITE_SEARCH: TextualSelect = text(SQLITE_SEARCH_SQL).columns(updated_at=DateTime(timezone=True))
POSTGRESQL_SEARCH: TextualSelect = text(POSTGRESQL_SEARCH_SQL).columns(
    updated_at=DateTime(timezone=True)
)
