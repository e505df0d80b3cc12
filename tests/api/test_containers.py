"""Containers through the official SDK: a container is a code interpreter session with files,
which responses run code in; files the code writes come back as container files, cited."""

from __future__ import annotations

import openai
import pytest
from openai import OpenAI

from tests.api.responses_support import scripted_model
from vtai.testing import Call, FakeModelServer, Reply, ToolCalls


def test_containers_and_their_files(client: OpenAI) -> None:
    notes = client.files.create(file=("notes.txt", b"first file"), purpose="user_data")
    container = client.containers.create(name="analysis", file_ids=[notes.id],
                                         expires_after={"anchor": "last_active_at",
                                                        "minutes": 30})
    assert container.id.startswith("cntr_") and container.status == "running"
    assert container.expires_after.minutes == 30  # type: ignore[union-attr]
    assert client.containers.retrieve(container.id).name == "analysis"
    assert container.id in [c.id for c in client.containers.list(name="analysis")]

    (copied,) = client.containers.files.list(container.id).data
    assert copied.path == "/mnt/data/notes.txt" and copied.source == "user"
    assert copied.bytes == len(b"first file")
    uploaded = client.containers.files.create(container.id, file=("data.csv", b"a,b\n1,2\n"))
    assert uploaded.id.startswith("cfile_") and uploaded.path == "/mnt/data/data.csv"
    content = client.containers.files.content.retrieve(uploaded.id, container_id=container.id)
    assert content.read() == b"a,b\n1,2\n"
    again = client.containers.files.create(container.id, file=("data.csv", b"replaced"))
    paths = [f.path for f in client.containers.files.list(container.id)]
    assert sorted(paths) == ["/mnt/data/data.csv", "/mnt/data/notes.txt"]  # (replaced)
    assert client.containers.files.retrieve(again.id, container_id=container.id).bytes == 8

    client.containers.files.delete(again.id, container_id=container.id)
    with pytest.raises(openai.NotFoundError):
        client.containers.files.retrieve(again.id, container_id=container.id)
    client.containers.delete(container.id)
    with pytest.raises(openai.NotFoundError):
        client.containers.retrieve(container.id)
    with pytest.raises(openai.BadRequestError):
        client.containers.create(name="x", file_ids=["file-missing"])


def test_a_response_runs_code_in_a_container(client: OpenAI,
                                             fake_model: FakeModelServer) -> None:
    container = client.containers.create(name="work")
    client.containers.files.create(container.id, file=("data.csv", b"x\n3\n4\n"))
    code = ("import pandas as pd\ndf = pd.read_csv('/mnt/data/data.csv')\nprint(df.x.sum())\n"
            "df.to_csv('/mnt/data/out.csv')")
    model = scripted_model(fake_model, ToolCalls([Call("code_interpreter", {"code": code})]),
                           Reply("Saved [the sums](sandbox:/mnt/data/out.csv)."))
    tool = {"type": "code_interpreter", "container": container.id}
    response = client.responses.create(model=model, input="Sum it", tools=[tool],  # type: ignore
                                       include=["code_interpreter_call.outputs"])
    call, message = response.output
    assert call.container_id == container.id  # type: ignore[union-attr]
    assert call.outputs[0].logs.strip() == "7"  # type: ignore[union-attr,index]
    written = [f for f in client.containers.files.list(container.id) if f.source == "assistant"]
    assert [f.path for f in written] == ["/mnt/data/out.csv"]
    (citation,) = message.content[0].annotations  # type: ignore[union-attr]
    assert citation.type == "container_file_citation"
    assert citation.container_id == container.id and citation.file_id == written[0].id
    assert citation.filename == "out.csv"
    text = message.content[0].text  # type: ignore[union-attr]
    assert text[citation.start_index:citation.end_index] == "sandbox:/mnt/data/out.csv"
    data = client.containers.files.content.retrieve(written[0].id, container_id=container.id)
    assert b"3" in data.read()


def test_an_auto_container_is_a_container(client: OpenAI, fake_model: FakeModelServer) -> None:
    model = scripted_model(fake_model, ToolCalls([Call("code_interpreter",
                                                       {"code": "open('/mnt/data/a.txt', "
                                                                "'w').write('hi')"})]),
                           Reply("Done."))
    response = client.responses.create(model=model, input="Write", tools=[  # type: ignore
        {"type": "code_interpreter", "container": {"type": "auto"}}])
    container_id = response.output[0].container_id  # type: ignore[union-attr]
    assert client.containers.retrieve(container_id).status == "running"
    assert [f.path for f in client.containers.files.list(container_id)] == ["/mnt/data/a.txt"]
    with pytest.raises(openai.BadRequestError):
        client.responses.create(model=model, input="x", tools=[  # type: ignore
            {"type": "code_interpreter", "container": "cntr_missing"}])


def test_an_auto_containers_files_are_files_of_the_container(
        client: OpenAI, fake_model: FakeModelServer) -> None:
    data = client.files.create(file=("data.csv", b"x\n3\n4\n"), purpose="assistants")
    code = "import pandas as pd\nprint(pd.read_csv('/mnt/data/data.csv').x.sum())"
    model = scripted_model(fake_model, ToolCalls([Call("code_interpreter", {"code": code})]),
                           Reply("7."))
    tool = {"type": "code_interpreter", "container": {"type": "auto", "file_ids": [data.id]}}
    response = client.responses.create(model=model, input="Sum it", tools=[tool],  # type: ignore
                                       include=["code_interpreter_call.outputs"])
    call = response.output[0]
    assert call.outputs[0].logs.strip() == "7"  # type: ignore[union-attr,index]
    listed = list(client.containers.files.list(call.container_id))  # type: ignore[union-attr]
    assert [(f.path, f.source) for f in listed] == [("/mnt/data/data.csv", "user")]
    content = client.containers.files.content.retrieve(
        listed[0].id, container_id=call.container_id)  # type: ignore[union-attr]
    assert content.read() == b"x\n3\n4\n"

    missing = {"type": "code_interpreter",
               "container": {"type": "auto", "file_ids": [data.id, "file-missing"]}}
    with pytest.raises(openai.BadRequestError) as err:
        client.responses.create(model=model, input="x", tools=[missing])  # type: ignore
    assert err.value.body["param"] == "tools[0].container.file_ids[1]"  # type: ignore[index]
