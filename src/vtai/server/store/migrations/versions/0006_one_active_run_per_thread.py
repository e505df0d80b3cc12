"""one active run per thread

Revision ID: 0006
Revises: 0005

A thread has at most one run that is not finished: a unique index on the thread of the runs
whose status is active. Starting a run checks that in the same statement that stores it;
the index makes two starts that check at the same moment unable to both succeed.
"""
import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

ACTIVE = "status IN ('cancelling', 'in_progress', 'queued', 'requires_action')"


def upgrade() -> None:
    op.create_index('ix_runs_active_thread', 'runs', ['thread_id'], unique=True,
                    postgresql_where=sa.text(ACTIVE), sqlite_where=sa.text(ACTIVE))


def downgrade() -> None:
    op.drop_index('ix_runs_active_thread', table_name='runs')
