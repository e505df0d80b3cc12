"""The assistant and thread a client used last, kept per server in a small JSON file."""

from __future__ import annotations

import json
import os
from pathlib import Path


def load_ids(path: Path, base_url: str) -> dict[str, str]:
    """``{"assistant_id": ..., "thread_id": ...}`` saved for ``base_url`` (either may lack)."""
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    entry = saved.get(base_url) if isinstance(saved, dict) else None
    return {k: v for k, v in (entry or {}).items() if isinstance(v, str)}


def save_ids(path: Path, base_url: str, **ids: str | None) -> None:
    """Merge ``ids`` into the entry for ``base_url``; a None value removes that id."""
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError):
        saved = {}
    entry = {**saved.get(base_url, {}), **ids}
    saved[base_url] = {k: v for k, v in entry.items() if v is not None}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(saved, indent=2))
    os.replace(tmp, path)  # a crash mid-write leaves the previous file, not half of one
