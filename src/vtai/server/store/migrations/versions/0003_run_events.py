"""run events

Revision ID: 0003
Revises: 0002
"""
import sqlalchemy as sa
from alembic import op

# Ids compare as bytes (see tables.py).
ID = sa.String(length=64).with_variant(sa.String(length=64, collation="C"), "postgresql")

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('run_events',
    sa.Column('id', ID, nullable=False),
    sa.Column('run_id', ID, nullable=False),
    sa.Column('event', sa.String(length=64), nullable=False),
    sa.Column('data', sa.Text(), nullable=False),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('run_events', schema=None) as batch_op:
        batch_op.create_index('ix_run_events_created_at', ['created_at'], unique=False)
        batch_op.create_index('ix_run_events_run_id_id', ['run_id', 'id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('run_events', schema=None) as batch_op:
        batch_op.drop_index('ix_run_events_run_id_id')
        batch_op.drop_index('ix_run_events_created_at')

    op.drop_table('run_events')
