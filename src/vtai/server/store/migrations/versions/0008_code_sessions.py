"""code sessions

Revision ID: 0008
Revises: 0007

The code interpreter's sessions, seen by every process: which one holds a session's local
kernel while it lives (a thread's next run goes to it first), a gateway kernel's id (any
worker on any host continues that kernel), and the session's files placed and bytes copied
out.
"""
import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

ID_TYPE = sa.String(length=64).with_variant(sa.String(length=64, collation='C'), 'postgresql')


def upgrade() -> None:
    op.create_table(
        'code_sessions',
        sa.Column('session_id', ID_TYPE, nullable=False),
        sa.Column('project_id', sa.String(length=64), nullable=False),
        sa.Column('backend', sa.String(length=16), nullable=False),
        sa.Column('kernel_id', sa.String(length=128), nullable=True),
        sa.Column('holder', sa.String(length=128), nullable=True),
        sa.Column('holder_expires_at', sa.BigInteger(), nullable=True),
        sa.Column('state', sa.Text(), nullable=False),
        sa.Column('ended', sa.Text(), nullable=True),
        sa.Column('last_used_at', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('session_id'),
    )
    op.create_index('ix_code_sessions_backend_last_used_at', 'code_sessions',
                    ['backend', 'last_used_at'])


def downgrade() -> None:
    op.drop_index('ix_code_sessions_backend_last_used_at', table_name='code_sessions')
    op.drop_table('code_sessions')
