"""blob_chunks: file bytes in PostgreSQL

Revision ID: 0009
Revises: 0008

On PostgreSQL, file bytes (uploads, code interpreter outputs) are rows of this table, so
servers on several hosts share nothing but the database (store/pgblobs.py); on SQLite they
stay files under the data dir and the table stays empty.

The bytes that servers before this revision kept under their data dirs are not moved here: a
migration runs once per database, on whichever host runs it first, and knows no data dir,
while each host has bytes of its own. Every server on PostgreSQL moves its host's bytes in
when it starts, and reads those not moved yet from its disk meanwhile; `vtai migrate
--data-dir ...` moves them too, before returning (store/files.py, ``move_disk_bytes``).
"""
import sqlalchemy as sa
from alembic import op

# Ids compare as bytes (see tables.py).
ID = sa.String(length=64).with_variant(sa.String(length=64, collation="C"), "postgresql")

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'blob_chunks',
        sa.Column('blob_id', ID, primary_key=True),
        sa.Column('seq', sa.Integer(), primary_key=True),
        sa.Column('data', sa.LargeBinary(), nullable=False),
    )


def downgrade() -> None:
    # Dropping file bytes would lose them: a database that has any keeps the table.
    if op.get_bind().execute(sa.text("SELECT 1 FROM blob_chunks LIMIT 1")).first():
        raise RuntimeError("blob_chunks holds file bytes: copy them out before downgrading "
                           "below revision 0009")
    op.drop_table('blob_chunks')
