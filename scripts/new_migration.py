"""Write a new alembic revision from the difference between tables.py and the migrations.

Usage: .venv/bin/python scripts/new_migration.py "what changed"
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path

from alembic import command
from alembic.script import ScriptDirectory

from vtai.server.store.migrate import MIGRATIONS, alembic_config

ID_TYPE = "sa.String(length=64).with_variant(sa.String(length=64, collation='C'), 'postgresql')"


def main(message: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = alembic_config(f"sqlite:///{tmp}/schema.db")
        command.upgrade(cfg, "head")
        head = ScriptDirectory.from_config(cfg).get_current_head() or "0000"
        rev_id = f"{int(head) + 1:04d}"
        command.revision(cfg, message=message, autogenerate=True, rev_id=rev_id)
    path = next((MIGRATIONS / "versions").glob(f"{rev_id}_*.py"))
    text = path.read_text()
    text = text.replace(ID_TYPE, "ID")
    text = text.replace(
        "import sqlalchemy as sa\n\n",
        "import sqlalchemy as sa\n\n# Ids compare as bytes (see tables.py).\n"
        'ID = sa.String(length=64).with_variant(sa.String(length=64, collation="C"), '
        '"postgresql")\n', 1)
    text = re.sub(r"    # ### .*###\n", "", text)
    text = re.sub(r"Create Date: .*\n", "", text)
    Path(path).write_text(text)
    subprocess.run([sys.executable, "-m", "ruff", "check", "--fix", "-q", str(path)], check=False)
    print(path)


if __name__ == "__main__":
    main(" ".join(sys.argv[1:]) or "change")
