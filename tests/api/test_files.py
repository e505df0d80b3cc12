"""Files: upload, list, retrieve, download, delete, through the SDK."""

from __future__ import annotations

import io

import httpx
import openai
import pytest
from openai import OpenAI

from tests.support import ServerProcess


def test_upload_retrieve_download_delete(client: OpenAI) -> None:
    payload = b"name,score\nada,3\ngrace,5\n"
    uploaded = client.files.create(file=("scores.csv", io.BytesIO(payload)),
                                   purpose="assistants")
    assert uploaded.id.startswith("file-") and uploaded.object == "file"
    assert uploaded.bytes == len(payload) and uploaded.filename == "scores.csv"
    assert uploaded.purpose == "assistants" and uploaded.status == "processed"
    assert client.files.retrieve(uploaded.id) == uploaded
    assert client.files.content(uploaded.id).read() == payload
    result = client.files.delete(uploaded.id)
    assert result.deleted and result.id == uploaded.id
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(uploaded.id)
    with pytest.raises(openai.NotFoundError):
        client.files.content(uploaded.id)


def test_list_with_purpose_filter_and_pagination(client: OpenAI) -> None:
    made = [client.files.create(file=(f"f{i}.txt", io.BytesIO(b"x" * i)),
                                purpose="user_data" if i % 2 else "vision").id
            for i in range(5)]
    vision = {f.id for f in client.files.list(purpose="vision")}
    assert {made[0], made[2], made[4]} <= vision and made[1] not in vision
    seen = [f.id for f in client.files.list(limit=2, order="asc") if f.id in made]
    assert seen == made


def test_binary_content_is_returned_intact(client: OpenAI) -> None:
    payload = bytes(range(256)) * 1000
    uploaded = client.files.create(file=("blob.bin", io.BytesIO(payload)), purpose="assistants")
    assert client.files.content(uploaded.id).read() == payload


def test_untrusted_filenames_are_kept_as_names_only(client: OpenAI,
                                                    server: ServerProcess) -> None:
    uploaded = client.files.create(file=("../../etc/evil name.txt", io.BytesIO(b"hi")),
                                   purpose="assistants")
    assert uploaded.filename == "../../etc/evil name.txt"
    assert client.files.content(uploaded.id).read() == b"hi"
    stored = list((server.data_dir / "files").rglob("*"))
    assert all("evil" not in p.name for p in stored)


def test_bad_uploads(server: ServerProcess) -> None:
    url = f"{server.base_url}/files"
    response = httpx.post(url, files={"file": ("a.txt", b"x")}, data={"purpose": "nonsense"})
    assert response.status_code == 400 and response.json()["error"]["param"] == "purpose"
    response = httpx.post(url, data={"purpose": "assistants"})
    assert response.status_code == 400 and response.json()["error"]["param"] == "file"
    response = httpx.post(url, files={"file": ("n" * 2000 + ".txt", b"x")},
                          data={"purpose": "assistants"})
    assert response.status_code == 400 and response.json()["error"]["param"] == "file"
