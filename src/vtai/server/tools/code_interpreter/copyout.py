"""The bounds on what a call copies out of its sandbox as Files (the images it displays and
the files it writes in /mnt/data): a number of each per call, a size per file, and bytes per
session; and the notes for the call's logs saying what was left out."""

from __future__ import annotations

from vtai.server.settings import CodeInterpreterSettings
from vtai.server.tools.code_interpreter.session_rows import SessionState

MB = 1024 * 1024
_NAME_CHARS = 80  # of a file's name in a note: the code chooses names, up to 8 levels deep


def size_text(size: int) -> str:
    """``2 MB``, ``878.9 KB``, ``12 bytes``."""
    for unit, scale in (("MB", MB), ("KB", 1024)):
        if size >= scale:
            return f"{size / scale:.1f}".removesuffix(".0") + f" {unit}"
    return f"{size} bytes"


def plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


class CopyOut:
    """What one call may still copy out; the session's bytes are counted on the session, so
    the budget holds across calls and runs of the thread."""

    def __init__(self, settings: CodeInterpreterSettings, session: SessionState) -> None:
        self.max_images = settings.max_output_images
        self.max_files = settings.max_output_files
        self.file_bytes = settings.max_output_file_mb * MB
        self.session_bytes = settings.max_session_output_mb * MB
        self.session = session
        self.images = 0  # displayed by the call so far

    def room(self) -> int:
        """The most bytes the next file may have."""
        return max(min(self.file_bytes, self.session_bytes - self.session.copied_out), 0)

    def refusal(self, name: str, size: int) -> str | None:
        """The note saying why a file (or image) of ``size`` bytes is not copied out, or None
        if it may be."""
        if size <= self.room():
            return None
        if len(name) > _NAME_CHARS:
            name = "..." + name[len(name) - _NAME_CHARS + 3:]
        what = f"[{name} ({size_text(size)}) not kept: "
        if size > self.file_bytes:
            return what + f"files over {size_text(self.file_bytes)} are not copied out]"
        return what + (f"this session has copied out {size_text(self.session.copied_out)} "
                       f"of its {size_text(self.session_bytes)}]")

    def copied(self, size: int) -> None:
        self.session.copied_out += size

    def count_image(self) -> int | None:
        """Counts a displayed image: its number in the call, or None past the call's bound
        (those are said once for all, by extra_images)."""
        self.images += 1
        return self.images if self.images <= self.max_images else None

    def extra_images(self) -> str | None:
        extra = self.images - self.max_images
        if extra <= 0:
            return None
        return (f"[{plural(extra, 'more image')} not kept: at most {self.max_images} per "
                "call]")

    def extra_files(self, written: int) -> str | None:
        extra = written - self.max_files
        if extra <= 0:
            return None
        return (f"[{plural(extra, 'more written file')} not kept: at most {self.max_files} "
                "per call]")
