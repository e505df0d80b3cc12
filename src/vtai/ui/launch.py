"""Starting Chainlit on the UI app, with its config in a directory of ours.

Chainlit reads (and would otherwise create) ``.chainlit/config.toml``, ``chainlit.md`` and
``.files/`` in its app root, by default the current directory: the root is set to a directory
under the data dir instead, and our config is written there on every start."""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

PACKAGE = Path(__file__).parent


def prepare_root(root: Path) -> None:
    (root / ".chainlit").mkdir(parents=True, exist_ok=True)
    (root / ".chainlit" / "config.toml").write_text((PACKAGE / "config.toml").read_text())
    (root / "chainlit.md").write_text((PACKAGE / "welcome.md").read_text())
    # Custom elements (public/elements/NAME.jsx), which the browser builds from source.
    elements = root / "public" / "elements"
    elements.mkdir(parents=True, exist_ok=True)
    for source in (PACKAGE / "elements").glob("*.jsx"):
        (elements / source.name).write_text(source.read_text())
    for name in ("vtai.svg", "vtai.css"):
        (root / "public" / name).write_text((PACKAGE / "elements" / name).read_text())


def auth_secret(root: Path) -> str:
    """The key Chainlit signs its (one, local) user's token with, made once and kept."""
    path = root / ".auth-secret"
    if not path.exists():
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(48))
    return path.read_text().strip()


def exec_chainlit(root: Path, host: str, port: int, env: dict[str, str]) -> None:
    """Replace this process with Chainlit serving the app (so signals reach it directly)."""
    prepare_root(root)
    environ = {**os.environ, **env, "CHAINLIT_APP_ROOT": str(root),
               "CHAINLIT_AUTH_SECRET": auth_secret(root)}
    # Chainlit would take these for a chat history store; the UI keeps none, and a
    # DATABASE_URL meant for another program must not be written to.
    for name in ("DATABASE_URL", "LITERAL_API_KEY"):
        environ.pop(name, None)
    argv = [sys.executable, "-m", "chainlit", "run", str(PACKAGE / "app.py"), "--headless",
            "--host", host, "--port", str(port)]
    os.execve(sys.executable, argv, environ)
