"""File bytes across hosts: two servers with data dirs of their own on one PostgreSQL share
uploads, code interpreter files and vector store text through the database alone; bytes that
a deployment from before kept on a host's disk move into the database."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest
import sqlalchemy as sa
from alembic import command
from openai import OpenAI

from tests.api.runs_support import scripted_assistant
from tests.conftest import require_postgres
from tests.support import ServerProcess, postgres_database
from vtai.server import ids
from vtai.server.store import migrate
from vtai.server.store.blobs import CHUNK, DiskBlobs
from vtai.testing import Call, FakeModelServer, Reply, ToolCalls

CODE = {"VTAI_CODE_POOL_SIZE": "1", "VTAI_CODE_TIMEOUT": "20"}


@dataclass
class Hosts:
    a: ServerProcess  # executes runs and ingests files
    b: ServerProcess  # serves HTTP only
    database_url: str

    def client(self, server: ServerProcess) -> OpenAI:
        return OpenAI(base_url=server.base_url, api_key="x", max_retries=0)

    def chunk_rows(self, blob_id: str) -> list[int]:
        return chunk_rows(self.database_url, blob_id)


def chunk_rows(database_url: str, blob_id: str) -> list[int]:
    """The sizes of the blob's rows in the database, in order."""
    engine = sa.create_engine(sync_url(database_url), poolclass=sa.NullPool)
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT length(data) FROM blob_chunks WHERE blob_id = :id ORDER BY seq"),
            {"id": blob_id}).scalars().all()
    engine.dispose()
    return list(rows)


def sync_url(url: str) -> str:
    return url.replace("+asyncpg", "+psycopg")


def stored_on_disk(server: ServerProcess) -> list[Path]:
    return [p for p in (server.data_dir / "files").rglob("*") if p.is_file()]


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory, fake_model: FakeModelServer
          ) -> Iterator[Hosts]:
    require_postgres()
    if not shutil.which("bwrap"):
        pytest.skip("bubblewrap is not installed (scripts/test installs it, as root)")
    with ExitStack() as stack:
        url = stack.enter_context(postgres_database())
        env = {"VTAI_DATABASE_URL": url, "VTAI_UPSTREAM_BASE_URL": fake_model.base_url,
               "VTAI_UPSTREAM_API_KEY": "fake", "VTAI_UPSTREAM_MAX_RETRIES": "0", **CODE}
        a = ServerProcess(tmp_path_factory.mktemp("host-a"), env).start()
        stack.callback(a.stop)
        b = ServerProcess(tmp_path_factory.mktemp("host-b"), env, ("--no-worker",)).start()
        stack.callback(b.stop)
        yield Hosts(a, b, url)


def test_an_upload_on_one_host_downloads_from_the_other(hosts: Hosts) -> None:
    small = b"name,score\nada,3\n"
    large = os.urandom(3 * CHUNK + 17)  # three full chunks and a piece
    up_a = hosts.client(hosts.a).files.create(file=("s.csv", io.BytesIO(small)),
                                              purpose="assistants")
    up_b = hosts.client(hosts.b).files.create(file=("l.bin", io.BytesIO(large)),
                                              purpose="assistants")
    assert hosts.client(hosts.b).files.content(up_a.id).read() == small
    assert hosts.client(hosts.a).files.content(up_b.id).read() == large
    assert hosts.chunk_rows(up_b.id) == [CHUNK, CHUNK, CHUNK, 17]
    assert stored_on_disk(hosts.a) == [] and stored_on_disk(hosts.b) == []

    hosts.client(hosts.b).files.delete(up_b.id)
    with pytest.raises(openai.NotFoundError):
        hosts.client(hosts.a).files.content(up_b.id)
    assert hosts.chunk_rows(up_b.id) == []


def test_a_large_download_streams_in_chunks(hosts: Hosts) -> None:
    """Stored as rows of a chunk each, read back through HTTP as it streams: the whole
    body, its declared length, intact."""
    size = 24 * CHUNK + 1
    data = b"".join(hashlib.sha256(i.to_bytes(8, "big")).digest() * (CHUNK // 32)
                    for i in range(25))[:size]
    response = httpx.post(f"{hosts.a.base_url}/files", data={"purpose": "assistants"},
                          files={"file": ("big.bin", data)}, timeout=60)
    assert response.status_code == 200, response.text
    file_id = response.json()["id"]
    assert response.json()["bytes"] == size
    assert hosts.chunk_rows(file_id) == [CHUNK] * 24 + [1]
    received, length = hashlib.sha256(), 0
    with httpx.stream("GET", f"{hosts.b.base_url}/files/{file_id}/content",
                      timeout=60) as download:
        assert download.status_code == 200
        assert download.headers["content-length"] == str(size)
        for piece in download.iter_raw():
            received.update(piece)
            length += len(piece)
    assert length == size and received.hexdigest() == hashlib.sha256(data).hexdigest()


def test_code_interpreter_files_cross_hosts(hosts: Hosts, fake_model: FakeModelServer) -> None:
    """A file uploaded on B reaches /mnt/data of a kernel on A; what the code writes and
    shows there downloads from B."""
    b = hosts.client(hosts.b)
    notes = b.files.create(file=("notes.txt", b"uploaded on host B"), purpose="assistants")
    text = "See [the table](sandbox:/mnt/data/out.csv)."
    code = ("print(open('/mnt/data/notes.txt').read())\n"
            "open('/mnt/data/out.csv', 'w').write('a\\n1\\n2\\n')\n"
            "import matplotlib.pyplot as plt\nplt.plot([1, 3, 2])\nplt.show()")
    assistant, _ = scripted_assistant(
        b, fake_model, ToolCalls([Call("code_interpreter", {"code": code})]), Reply(text),
        tools=[{"type": "code_interpreter"}],
        tool_resources={"code_interpreter": {"file_ids": [notes.id]}})
    thread = b.beta.threads.create(messages=[{"role": "user", "content": "Go."}])
    run = b.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id,
                                              poll_interval_ms=50)
    assert run.status == "completed", run.last_error
    assert f"claimed run {run.id}" in hosts.a.log()  # B executes nothing
    step = next(s for s in b.beta.threads.runs.steps.list(run.id, thread_id=thread.id)
                if s.type == "tool_calls")
    call = step.step_details.tool_calls[0]
    assert "".join(o.logs for o in call.code_interpreter.outputs if o.type == "logs") \
        == "uploaded on host B\n"
    [image] = [o for o in call.code_interpreter.outputs if o.type == "image"]
    assert b.files.content(image.image.file_id).read().startswith(b"\x89PNG\r\n\x1a\n")
    message = next(iter(b.beta.threads.messages.list(thread.id)))
    [annotation] = message.content[0].text.annotations
    assert b.files.content(annotation.file_path.file_id).read() == b"a\n1\n2\n"
    assert stored_on_disk(hosts.a) == [] and stored_on_disk(hosts.b) == []


def test_vector_store_text_cross_hosts(hosts: Hosts) -> None:
    """Uploaded on B, parsed on A (B ingests nothing), its text read back on B."""
    b = hosts.client(hosts.b)
    words = "Henrietta keeps the lighthouse on Tuesdays. " * 200
    upload = b.files.create(file=("keeper.txt", words.encode()), purpose="assistants")
    store = b.vector_stores.create(name="cross", file_ids=[upload.id])
    for _ in range(600):
        got = b.vector_stores.files.retrieve(upload.id, vector_store_id=store.id)
        if got.status != "in_progress":
            break
        time.sleep(0.05)
    assert got.status == "completed", got.last_error
    content = list(b.vector_stores.files.content(upload.id, vector_store_id=store.id))
    assert "".join(part.text for part in content) == words.strip()
    assert f"file {upload.id} in {store.id} ingested" in hosts.a.log()


def test_bytes_on_disk_from_before_move_into_the_database(
        tmp_path: Path, fake_model: FakeModelServer) -> None:
    """A PostgreSQL deployment from before revision 0009 kept each host's uploads under its
    data dir: the host's upgraded server moves them into the database, so another host
    downloads them, and removes them from its disk."""
    require_postgres()
    with ExitStack() as stack:
        url = stack.enter_context(postgres_database())
        old = tmp_path / "old-host"
        data = os.urandom(2 * CHUNK + 99)
        file_id = _deployment_before_0009(url, old, data)
        env = {"VTAI_DATABASE_URL": url}
        upgraded = ServerProcess(old, env).start()
        stack.callback(upgraded.stop)
        # Served from its disk until moved, from the database afterwards.
        assert hosts_download(upgraded, file_id) == data
        upgraded.wait_for_log("moved the bytes of 1 files")
        assert not (old / "files" / file_id[-2:] / file_id).exists()
        other = ServerProcess(tmp_path / "new-host", env).start()
        stack.callback(other.stop)
        assert hosts_download(other, file_id) == data
        obj = OpenAI(base_url=other.base_url, api_key="x").files.retrieve(file_id)
        assert obj.bytes == len(data) and obj.filename == "before.bin"


def test_vtai_migrate_moves_the_hosts_bytes(tmp_path: Path) -> None:
    require_postgres()
    with ExitStack() as stack:
        url = stack.enter_context(postgres_database())
        data = os.urandom(CHUNK + 1)
        file_id = _deployment_before_0009(url, tmp_path, data)
        env = {**os.environ, "VTAI_DATABASE_URL": url}
        done = subprocess.run([sys.executable, "-m", "vtai.cli", "migrate", "--data-dir",
                               str(tmp_path)], env=env, capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 0, done.stderr
        assert "moved the bytes of 1 files" in done.stdout
        assert not DiskBlobs(tmp_path / "files").path(file_id).exists()
        assert chunk_rows(url, file_id) == [CHUNK, 1]


def hosts_download(server: ServerProcess, file_id: str) -> bytes:
    client = OpenAI(base_url=server.base_url, api_key="x", max_retries=0)
    return client.files.content(file_id).read()


def _deployment_before_0009(url: str, data_dir: Path, data: bytes) -> str:
    """A database at revision 0007 with one uploaded file whose bytes are under
    ``data_dir``, as a server before 0009 stored them."""
    engine = sa.create_engine(sync_url(url), poolclass=sa.NullPool)
    with engine.begin() as conn:
        cfg = migrate.alembic_config()
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0007")
    file_id = ids.new_id("file-")
    obj = {"id": file_id, "object": "file", "bytes": len(data), "created_at": ids.now(),
           "filename": "before.bin", "purpose": "assistants", "status": "processed"}
    with engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO files (id, project_id, created_at, purpose, expires_at, data) "
            "VALUES (:id, 'proj_default', :created_at, 'assistants', NULL, :data)"),
            {"id": file_id, "created_at": obj["created_at"], "data": json.dumps(obj)})
        tables = set(sa.inspect(conn).get_table_names())
    engine.dispose()
    assert "files" in tables and "blob_chunks" not in tables
    path = DiskBlobs(data_dir / "files").path(file_id)
    path.parent.mkdir(parents=True)
    path.write_bytes(data)
    return file_id
