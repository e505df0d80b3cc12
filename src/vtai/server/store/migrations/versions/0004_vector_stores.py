"""vector stores

Revision ID: 0004
Revises: 0003
"""
import sqlalchemy as sa
from alembic import op

# Ids compare as bytes (see tables.py).
ID = sa.String(length=64).with_variant(sa.String(length=64, collation="C"), "postgresql")

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('vector_store_chunks',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True,
              nullable=False),
    sa.Column('vector_store_id', ID, nullable=False),
    sa.Column('file_id', ID, nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('start_char', sa.Integer(), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('tokens', sa.Integer(), nullable=False),
    sa.Column('model', sa.String(length=128), nullable=False),
    sa.Column('embedding', sa.LargeBinary(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('vector_store_chunks', schema=None) as batch_op:
        batch_op.create_index('ix_vector_store_chunks_store_file',
                              ['vector_store_id', 'file_id', 'position'], unique=False)

    op.create_table('vector_store_file_batches',
    sa.Column('id', ID, nullable=False),
    sa.Column('project_id', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.Column('vector_store_id', ID, nullable=False),
    sa.Column('data', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('vector_store_file_batches', schema=None) as batch_op:
        batch_op.create_index('ix_vector_store_file_batches_vector_store_id_id',
                              ['vector_store_id', 'id'], unique=False)

    op.create_table('vector_store_files',
    sa.Column('vector_store_id', ID, nullable=False),
    sa.Column('id', ID, nullable=False),
    sa.Column('project_id', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.Column('batch_id', ID, nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('worker_id', sa.String(length=64), nullable=True),
    sa.Column('lease_expires_at', sa.BigInteger(), nullable=True),
    sa.Column('attempt', sa.Integer(), server_default='0', nullable=False),
    sa.Column('data', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('vector_store_id', 'id')
    )
    with op.batch_alter_table('vector_store_files', schema=None) as batch_op:
        batch_op.create_index('ix_vector_store_files_batch_id', ['batch_id'], unique=False)
        batch_op.create_index('ix_vector_store_files_id', ['id'], unique=False)
        batch_op.create_index('ix_vector_store_files_status', ['status'], unique=False)

    op.create_table('vector_stores',
    sa.Column('id', ID, nullable=False),
    sa.Column('project_id', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.Column('expires_at', sa.BigInteger(), nullable=True),
    sa.Column('index_version', sa.Integer(), server_default='0', nullable=False),
    sa.Column('data', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('vector_stores', schema=None) as batch_op:
        batch_op.create_index('ix_vector_stores_project_id_id', ['project_id', 'id'], unique=False)

    _create_lexical_index()


# The lexical index is not in tables.py: alembic has no type for either of them.
_SQLITE_LEXICAL = (
    # External content: the text is stored once, in vector_store_chunks.
    "CREATE VIRTUAL TABLE vector_store_chunks_fts USING fts5(text, "
    "content='vector_store_chunks', content_rowid='id', "
    "tokenize='porter unicode61 remove_diacritics 2')",
    "CREATE TRIGGER vector_store_chunks_fts_insert AFTER INSERT ON vector_store_chunks BEGIN "
    "INSERT INTO vector_store_chunks_fts(rowid, text) VALUES (new.id, new.text); END",
    "CREATE TRIGGER vector_store_chunks_fts_delete AFTER DELETE ON vector_store_chunks BEGIN "
    "INSERT INTO vector_store_chunks_fts(vector_store_chunks_fts, rowid, text) "
    "VALUES ('delete', old.id, old.text); END",
)
_POSTGRES_LEXICAL = (
    "ALTER TABLE vector_store_chunks ADD COLUMN tsv tsvector "
    "GENERATED ALWAYS AS (to_tsvector('english', text)) STORED",
    "CREATE INDEX ix_vector_store_chunks_tsv ON vector_store_chunks USING gin (tsv)",
)


def _create_lexical_index() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    for statement in _SQLITE_LEXICAL if sqlite else _POSTGRES_LEXICAL:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TABLE vector_store_chunks_fts")  # its triggers go with the chunks
    with op.batch_alter_table('vector_stores', schema=None) as batch_op:
        batch_op.drop_index('ix_vector_stores_project_id_id')

    op.drop_table('vector_stores')
    with op.batch_alter_table('vector_store_files', schema=None) as batch_op:
        batch_op.drop_index('ix_vector_store_files_status')
        batch_op.drop_index('ix_vector_store_files_id')
        batch_op.drop_index('ix_vector_store_files_batch_id')

    op.drop_table('vector_store_files')
    with op.batch_alter_table('vector_store_file_batches', schema=None) as batch_op:
        batch_op.drop_index('ix_vector_store_file_batches_vector_store_id_id')

    op.drop_table('vector_store_file_batches')
    with op.batch_alter_table('vector_store_chunks', schema=None) as batch_op:
        batch_op.drop_index('ix_vector_store_chunks_store_file')

    op.drop_table('vector_store_chunks')
