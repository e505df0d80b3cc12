"""initial tables

Revision ID: 0001
Revises:
"""
import sqlalchemy as sa
from alembic import op

# Ids compare as bytes (see tables.py).
ID = sa.String(length=64).with_variant(sa.String(length=64, collation="C"), "postgresql")

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('api_keys',
    sa.Column('id', ID, nullable=False),
    sa.Column('project_id', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=256), nullable=False),
    sa.Column('key_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('key_hash')
    )
    op.create_table('assistants',
    sa.Column('id', ID, nullable=False),
    sa.Column('project_id', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.Column('data', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('assistants', schema=None) as batch_op:
        batch_op.create_index('ix_assistants_project_id_id', ['project_id', 'id'], unique=False)

    op.create_table('messages',
    sa.Column('id', ID, nullable=False),
    sa.Column('project_id', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.Column('thread_id', ID, nullable=False),
    sa.Column('run_id', ID, nullable=True),
    sa.Column('data', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.create_index('ix_messages_thread_id_id', ['thread_id', 'id'], unique=False)

    op.create_table('run_steps',
    sa.Column('id', ID, nullable=False),
    sa.Column('project_id', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.Column('thread_id', ID, nullable=False),
    sa.Column('run_id', ID, nullable=False),
    sa.Column('data', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('run_steps', schema=None) as batch_op:
        batch_op.create_index('ix_run_steps_run_id_id', ['run_id', 'id'], unique=False)

    op.create_table('runs',
    sa.Column('id', ID, nullable=False),
    sa.Column('project_id', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.Column('thread_id', ID, nullable=False),
    sa.Column('status', sa.String(length=32), nullable=False),
    sa.Column('worker_id', sa.String(length=64), nullable=True),
    sa.Column('lease_expires_at', sa.BigInteger(), nullable=True),
    sa.Column('attempt', sa.Integer(), server_default='0', nullable=False),
    sa.Column('data', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.create_index('ix_runs_status', ['status'], unique=False)
        batch_op.create_index('ix_runs_thread_id_id', ['thread_id', 'id'], unique=False)

    op.create_table('threads',
    sa.Column('id', ID, nullable=False),
    sa.Column('project_id', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.Column('data', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )


def downgrade() -> None:
    op.drop_table('threads')
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.drop_index('ix_runs_thread_id_id')
        batch_op.drop_index('ix_runs_status')

    op.drop_table('runs')
    with op.batch_alter_table('run_steps', schema=None) as batch_op:
        batch_op.drop_index('ix_run_steps_run_id_id')

    op.drop_table('run_steps')
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_index('ix_messages_thread_id_id')

    op.drop_table('messages')
    with op.batch_alter_table('assistants', schema=None) as batch_op:
        batch_op.drop_index('ix_assistants_project_id_id')

    op.drop_table('assistants')
    op.drop_table('api_keys')
