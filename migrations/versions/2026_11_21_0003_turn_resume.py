"""turn resume: message.content_seq checkpoints and idempotent turn keys

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21 11:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("message", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("content_seq", sa.Integer(), server_default="0", nullable=False)
        )
    op.create_table(
        "turn_key",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("key", sa.String(length=128), nullable=False),
        sa.Column("chat_id", sa.String(length=36), nullable=False),
        sa.Column("user_message_id", sa.String(length=36), nullable=True),
        sa.Column("assistant_message_id", sa.String(length=36), nullable=False),
        sa.Column("created_chat", sa.Boolean(), nullable=False),
        sa.Column("request_digest", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["assistant_message_id"],
            ["message.id"],
            name=op.f("fk_turn_key_assistant_message_id_message"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["chat_id"], ["chat.id"], name=op.f("fk_turn_key_chat_id_chat"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["user.id"], name=op.f("fk_turn_key_user_id_user"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_turn_key")),
        sa.UniqueConstraint("user_id", "key", name="uq_turn_key_user_id_key"),
    )
    with op.batch_alter_table("turn_key", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_turn_key_assistant_message_id"), ["assistant_message_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("turn_key", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_turn_key_assistant_message_id"))
    op.drop_table("turn_key")
    with op.batch_alter_table("message", schema=None) as batch_op:
        batch_op.drop_column("content_seq")
