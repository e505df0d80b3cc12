"""Files a user attaches to a message, and the tool that reads each kind."""

from __future__ import annotations

from pathlib import PurePath

# Documents are searched (file_search); data, code, images and archives are opened by code.
FILE_SEARCH_SUFFIXES = frozenset({
    ".pdf", ".doc", ".docx", ".md", ".markdown", ".txt", ".rst", ".html", ".htm", ".pptx",
    ".tex", ".rtf", ".odt", ".epub",
})


def tool_for(filename: str) -> str:
    """``file_search`` for documents, ``code_interpreter`` for everything else."""
    suffix = PurePath(filename).suffix.lower()
    return "file_search" if suffix in FILE_SEARCH_SUFFIXES else "code_interpreter"


# Images a vision model can look at (OpenAI's image_file types), besides the code reading them.
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".gif", ".webp"})


def is_image(filename: str) -> bool:
    return PurePath(filename).suffix.lower() in IMAGE_SUFFIXES
