"""PostgreSQL full-text search: the webui_search configuration and two expression GIN indexes

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21 13:50:00.000000

SQLite searches through the FTS5 table of migration 0002; this revision does nothing there.
On PostgreSQL, chat titles and user/assistant message text are searched through expression
indexes, so no trigger, no extra column and nothing for a writer to keep in step:

- `webui_search`, a text search configuration copied from `simple` (lower-case, no stemming,
  no stop words: whole words, as FTS5's unicode61 matches them) with `unaccent` in front of it
  when the extension can be installed (accent-insensitive, as unicode61 is);
- `chat_search_message_ix` on message content and `chat_search_title_ix` on chat titles. The
  text is split on non-alphanumeric runs first (`regexp_replace`), the way unicode61 and the
  service's query parsing split words; PostgreSQL's own parser would keep `example.com` or
  `a@b.org` as one token.

The repository (webui_backend/db/repositories/chat_search.py) repeats these expressions
character for character; the planner uses an index only for the expression it was built on.
"""

from collections.abc import Sequence

from alembic import op
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_CONFIG = "webui_search"
_TOKEN_TYPES = (
    "asciiword, asciihword, hword_asciipart, word, hword, hword_part, "
    "numword, numhword, hword_numpart"
)
_SPLIT = "'[[:punct:][:space:]]+', ' ', 'g'"


def _install_unaccent() -> bool:
    """Create the `unaccent` extension when the server has it; False when it cannot (not
    shipped, or this role may not create it): search is then only accent-sensitive."""
    bind = op.get_bind()
    available = bind.execute(
        text("SELECT 1 FROM pg_available_extensions WHERE name = 'unaccent'")
    ).first()
    if available is None:
        return False
    try:
        with bind.begin_nested():
            bind.execute(text("CREATE EXTENSION IF NOT EXISTS unaccent"))
    except DBAPIError:  # rolled back to the savepoint; the search works without it
        return False
    return True


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(f"CREATE TEXT SEARCH CONFIGURATION {_CONFIG} (COPY = simple)")
    if _install_unaccent():
        op.execute(
            f"ALTER TEXT SEARCH CONFIGURATION {_CONFIG} "
            f"ALTER MAPPING FOR {_TOKEN_TYPES} WITH unaccent, simple"
        )
    op.execute(
        "CREATE INDEX chat_search_message_ix ON message USING gin "
        f"(to_tsvector('{_CONFIG}'::regconfig, regexp_replace(content, {_SPLIT}))) "
        "WHERE role IN ('user', 'assistant') AND content <> ''"
    )
    op.execute(
        "CREATE INDEX chat_search_title_ix ON chat USING gin "
        f"(to_tsvector('{_CONFIG}'::regconfig, regexp_replace(title, {_SPLIT}))) "
        "WHERE title <> ''"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP INDEX IF EXISTS chat_search_title_ix")
    op.execute("DROP INDEX IF EXISTS chat_search_message_ix")
    op.execute(f"DROP TEXT SEARCH CONFIGURATION IF EXISTS {_CONFIG}")
    # The unaccent extension stays: other schemas may use it.
