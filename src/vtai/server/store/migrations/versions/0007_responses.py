"""responses, items, containers

Revision ID: 0007
Revises: 0006

The Responses API's tables: responses (claimed by workers as runs are), the items that are not
thread messages (a response's input, a conversation's other items), and containers with their
files. A conversation is a thread: it needs no table of its own.
"""
import sqlalchemy as sa
from alembic import op

# Ids compare as bytes (see tables.py).
ID = sa.String(length=64).with_variant(sa.String(length=64, collation="C"), "postgresql")

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def _object_table(name: str, *columns: sa.Column) -> None:
    op.create_table(
        name,
        sa.Column('id', ID, primary_key=True),
        sa.Column('project_id', sa.String(length=64), nullable=False),
        sa.Column('created_at', sa.BigInteger(), nullable=False),
        *columns,
        sa.Column('data', sa.Text(), nullable=False),
    )


def upgrade() -> None:
    _object_table(
        'responses',
        sa.Column('status', sa.String(length=32), nullable=False),
        sa.Column('conversation_id', ID, nullable=True),
        sa.Column('previous_response_id', ID, nullable=True),
        sa.Column('stored', sa.Integer(), nullable=False, server_default='1'),
        sa.Column('worker_id', sa.String(length=64), nullable=True),
        sa.Column('lease_expires_at', sa.BigInteger(), nullable=True),
        sa.Column('attempt', sa.Integer(), nullable=False, server_default='0'),
    )
    op.create_index('ix_responses_project_id_id', 'responses', ['project_id', 'id'])
    op.create_index('ix_responses_status', 'responses', ['status'])
    op.create_table(
        'items',
        sa.Column('seq', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'),
                  primary_key=True, autoincrement=True),
        sa.Column('id', ID, nullable=False),
        sa.Column('project_id', sa.String(length=64), nullable=False),
        sa.Column('owner_id', ID, nullable=False),
        sa.Column('kind', sa.String(length=16), nullable=False),
        sa.Column('created_at', sa.BigInteger(), nullable=False),
        sa.Column('data', sa.Text(), nullable=False),
    )
    op.create_index('ix_items_owner_id_seq', 'items', ['owner_id', 'seq'])
    op.create_index('ix_items_id', 'items', ['id'])
    _object_table(
        'containers',
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('expires_at', sa.BigInteger(), nullable=True),
    )
    op.create_index('ix_containers_project_id_id', 'containers', ['project_id', 'id'])
    _object_table(
        'container_files',
        sa.Column('container_id', ID, nullable=False),
        sa.Column('path', sa.Text(), nullable=False),
    )
    op.create_index('ix_container_files_container_id_id', 'container_files',
                    ['container_id', 'id'])


def downgrade() -> None:
    op.drop_table('container_files')
    op.drop_table('containers')
    op.drop_table('items')
    op.drop_table('responses')
