"""search index (SQLite): a reply is indexed when it stops streaming, not at every checkpoint

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22 01:00:00.000000

Migration 0002's trigger re-indexed a message whenever its content changed. A streaming reply's
content changes at every checkpoint (once a second per reply), so each checkpoint deleted the
reply's FTS5 row by key and tokenized the whole partial text again: the work grows with the
square of the reply's length, on the single SQLite writer. Now a message is indexed when it is
written in a state other than `streaming` (a user message at once; a reply when it completes,
is stopped, fails or is marked interrupted). A reply that is continued keeps its earlier
indexed text until it stops again. PostgreSQL (expression indexes, 0004) is unchanged.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SEARCHABLE = "{0}.content <> '' AND {0}.role IN ('user', 'assistant')"
_DONE = "{0}.status <> 'streaming'"


def _keys(row: str) -> str:
    def hex_(expr: str) -> str:
        return f"replace({expr}, '-', '')"

    owner = f"(SELECT user_id FROM chat WHERE id = {row}.chat_id)"
    return (
        f"'m' || {hex_(row + '.id')} || ' c' || {hex_(row + '.chat_id')} || ' u' || {hex_(owner)}"
    )


def _triggers(*, when_done: bool) -> list[str]:
    """The message insert and update triggers; `when_done` skips rows still streaming."""
    insert = "INSERT INTO chat_search (body, keys, chat_id, message_id) "
    delete_old = (
        "DELETE FROM chat_search WHERE rowid IN (SELECT rowid FROM chat_search "
        "WHERE chat_search MATCH 'keys : ' || 'm' || replace(old.id, '-', ''));"
    )
    new_searchable = _SEARCHABLE.format("new")
    if when_done:
        insert_when = f"{new_searchable} AND {_DONE.format('new')}"
        update_of = "content, status"
        update_when = (
            f"{_DONE.format('new')} AND "
            "(old.content IS NOT new.content OR old.status IS NOT new.status)"
        )
    else:  # migration 0002's
        insert_when = new_searchable
        update_of = "content"
        update_when = "old.content IS NOT new.content"
    return [
        "DROP TRIGGER IF EXISTS chat_search_message_insert",
        "DROP TRIGGER IF EXISTS chat_search_message_update",
        "CREATE TRIGGER chat_search_message_insert AFTER INSERT ON message "
        f"WHEN {insert_when} BEGIN "
        f"{insert} VALUES (new.content, {_keys('new')}, new.chat_id, new.id); END",
        f"CREATE TRIGGER chat_search_message_update AFTER UPDATE OF {update_of} ON message "
        f"WHEN {update_when} BEGIN {delete_old} "
        f"{insert} SELECT new.content, {_keys('new')}, new.chat_id, new.id "
        f"WHERE {new_searchable}; END",
    ]


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for statement in _triggers(when_done=True):
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for statement in _triggers(when_done=False):
        op.execute(statement)
