"""run steps by thread, messages by run

Revision ID: 0005
Revises: 0004

Every model call reads the thread's tool-call steps (its earlier function calls and their
outputs), and ending a run early (cancelled, failed, expired) looks for its unfinished
messages: without these indexes both read every row of their table.
"""
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_run_steps_thread_id_id', 'run_steps', ['thread_id', 'id'])
    op.create_index('ix_messages_run_id', 'messages', ['run_id'])


def downgrade() -> None:
    op.drop_index('ix_messages_run_id', table_name='messages')
    op.drop_index('ix_run_steps_thread_id_id', table_name='run_steps')
