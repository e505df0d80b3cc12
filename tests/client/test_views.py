"""process_* on the shapes of code interpreter, file search and function steps and of
messages with citations and images (built from the SDK's types where the server cannot make
them yet), with files stored on the server."""

from __future__ import annotations

from typing import Any

from openai.types.beta.threads import Message
from openai.types.beta.threads.runs import RunStep

from vtai.assistants import (
    FunctionRegistry,
    ImageView,
    Source,
    TextView,
    process_code_interpreter,
    process_function_call,
    process_retrieval,
    process_run_step,
    process_thread_message,
    process_tool_call,
    use_functions,
)
from vtai.assistants.functions import pending_calls

PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                    "1f15c4890000000d49444154789c6360f8cf000003010100c9fe92ef0000000049454e44ae426082")


def step(details: dict[str, Any], status: str = "in_progress", **extra: Any) -> RunStep:
    return RunStep.model_validate({
        "id": "step_1", "object": "thread.run.step", "created_at": 100, "run_id": "run_1",
        "assistant_id": "asst_1", "thread_id": "thread_1", "type": "tool_calls",
        "status": status, "cancelled_at": None, "completed_at": None, "expired_at": None,
        "failed_at": None, "last_error": None, "step_details": details, "usage": None,
        **extra})


def code_call(outputs: list[dict[str, Any]]) -> dict[str, Any]:
    return {"id": "call_code", "type": "code_interpreter",
            "code_interpreter": {"input": "print(6 * 7)", "outputs": outputs}}


SEARCH_CALL = {"id": "call_search", "type": "file_search", "file_search": {
    "ranking_options": {"ranker": "default_2024_08_21", "score_threshold": 0.0},
    "results": [{"file_id": "file-a", "file_name": "guide.md", "score": 0.91,
                 "content": [{"type": "text", "text": "Plants need light."}]},
                {"file_id": "file-b", "file_name": "faq.txt", "score": 0.4}]}}
FUNCTION_CALL = {"id": "call_fn", "type": "function", "function": {
    "name": "get_weather", "arguments": '{"city":"Rome"}', "output": None}}


async def test_code_interpreter_logs_and_images() -> None:
    details = step({"type": "tool_calls", "tool_calls": [code_call([
        {"type": "logs", "logs": "42\n"}, {"type": "image", "image": {"file_id": "file-img"}},
        {"type": "logs", "logs": "done\n"}])]}).step_details
    [view] = await process_code_interpreter(details)
    assert (view.id, view.input, view.logs, view.image_file_ids) == (
        "call_code", "print(6 * 7)", "42\ndone\n", ["file-img"])
    assert await process_retrieval(details) == [] and await process_function_call(details) == []


async def test_file_search_results_become_sources() -> None:
    details = step({"type": "tool_calls", "tool_calls": [SEARCH_CALL]}).step_details
    [view] = await process_retrieval(details)
    assert view.sources == [Source("file-a", "guide.md", 0.91, "Plants need light."),
                            Source("file-b", "faq.txt", 0.4, "")]


async def test_function_call_output_from_the_step_or_from_a_call_run_here() -> None:
    details = step({"type": "tool_calls", "tool_calls": [FUNCTION_CALL]}).step_details
    [view] = await process_function_call(details)
    assert (view.name, view.arguments, view.output) == ("get_weather", '{"city":"Rome"}', None)

    registry = FunctionRegistry()
    registry.register(lambda city: f"warm in {city}", name="get_weather")
    with use_functions(registry):
        await registry.run(pending_calls(details))
        [view] = await process_function_call(details)
    assert view.output == "warm in Rome"


async def test_a_step_seen_twice_updates_its_views_in_place() -> None:
    references: dict[str, Any] = {}
    streaming = step({"type": "tool_calls", "tool_calls": [
        {"id": "call_code", "type": "code_interpreter",
         "code_interpreter": {"input": "print(6", "outputs": []}}, SEARCH_CALL]})
    first = await process_run_step(references, streaming)
    assert [v.type for v in first] == ["code_interpreter", "file_search"]
    assert first[0].input == "print(6" and first[0].language == "python"

    done = step({"type": "tool_calls", "tool_calls": [
        code_call([{"type": "logs", "logs": "42\n"},
                   {"type": "image", "image": {"file_id": "file-img"}}]), SEARCH_CALL,
        {**FUNCTION_CALL, "function": {**FUNCTION_CALL["function"], "output": "hot"}}]},
        status="completed", completed_at=105)
    second = await process_run_step(references, done)
    assert second[0] is first[0] and second[1] is first[1]
    assert len(references) == 3
    code, search, function = second
    assert (code.input, code.output, code.image_file_ids, code.status, code.completed_at) == (
        "print(6 * 7)", "42\n", ["file-img"], "completed", 105)
    assert [s.filename for s in search.sources] == ["guide.md", "faq.txt"]
    assert (function.name, function.input, function.output, function.language) == (
        "get_weather", '{\n  "city": "Rome"\n}', "hot", "json")


async def test_process_tool_call_as_the_docs_call_it() -> None:
    references: dict[str, Any] = {}
    run_step = step({"type": "tool_calls", "tool_calls": [code_call([])]})
    call = run_step.step_details.tool_calls[0]  # type: ignore[union-attr]
    view = await process_tool_call(references, run_step, call, "code_interpreter",
                                   call.code_interpreter.input, call.code_interpreter.outputs,
                                   show_input="python")
    again = await process_tool_call(references, run_step, call, "code_interpreter",
                                    "print(1)", "1\n", show_input="python")
    assert again is view and list(references) == ["call_code"]
    assert (view.input, view.output, view.started_at) == ("print(1)", "1\n", 100)


def message(parts: list[dict[str, Any]], status: str = "completed") -> Message:
    return Message.model_validate({
        "id": "msg_1", "object": "thread.message", "created_at": 1, "thread_id": "thread_1",
        "status": status, "incomplete_details": None, "completed_at": None,
        "incomplete_at": None, "role": "assistant", "content": parts, "assistant_id": None,
        "run_id": None, "attachments": [], "metadata": {}})


def text(value: str, annotations: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "text", "text": {"value": value, "annotations": annotations}}


def citation(value: str, marker: str, file_id: str) -> dict[str, Any]:
    start = value.index(marker)
    return {"type": "file_citation", "text": marker, "start_index": start,
            "end_index": start + len(marker), "file_citation": {"file_id": file_id}}


async def test_citations_are_resolved_to_numbered_sources(aclient) -> None:
    guide = await aclient.files.create(file=("guide.md", b"Plants need light."),
                                       purpose="assistants")
    chart = await aclient.files.create(file=("chart.csv", b"a,b\n1,2\n"), purpose="assistants")
    value = ("Plants need light【4:0†guide.md】 and water【4:1†guide.md】 (see【4:2†x】). "
             "[Download the data](sandbox:/mnt/data/chart.csv)")
    annotations = [citation(value, "【4:0†guide.md】", guide.id),
                   citation(value, "【4:1†guide.md】", guide.id),
                   citation(value, "【4:2†x】", "file-gone")]
    path_start = value.index("sandbox:")
    annotations.append({"type": "file_path", "text": "sandbox:/mnt/data/chart.csv",
                        "start_index": path_start, "end_index": len(value) - 1,
                        "file_path": {"file_id": chart.id}})
    references: dict[str, Any] = {}
    [view] = await process_thread_message(references, message([text(value, annotations)]),
                                          aclient)
    assert isinstance(view, TextView)
    assert view.text == "Plants need light[1] and water[1] (see[2]). Download the data [3]"
    assert [(c.number, c.kind, c.filename) for c in view.citations] == [
        (1, "file_citation", "guide.md"), (2, "file_citation", "file-gone"),
        (3, "file_path", "chart.csv")]


async def test_messages_update_in_place_and_images_are_read_once(aclient) -> None:
    image = await aclient.files.create(file=("plot.png", PNG), purpose="assistants")
    references: dict[str, Any] = {}
    partial = message([text("The plot", [])], status="in_progress")
    [first] = await process_thread_message(references, partial, aclient)
    assert first.status == "in_progress"

    full = message([text("The plot is below.", []),
                    {"type": "image_file", "image_file": {"file_id": image.id}}])
    views = await process_thread_message(references, full, aclient)
    assert views[0] is first and first.text == "The plot is below."
    assert first.status == "completed"
    assert isinstance(views[1], ImageView) and views[1].data == PNG
    await aclient.files.delete(image.id)
    again = await process_thread_message(references, full, aclient)
    assert again == views and again[1].data == PNG  # not read again
    assert sorted(references) == ["msg_1:0", f"msg_1:{image.id}"]


async def test_images_put_before_the_streamed_text_do_not_duplicate_it(aclient) -> None:
    references: dict[str, Any] = {}
    [streamed] = await process_thread_message(
        references, message([text("Here", [])], status="in_progress"), aclient)
    final = message([{"type": "image_file", "image_file": {"file_id": "file-gone"}},
                     text("Here it is.", [])])
    image, final_text = await process_thread_message(references, final, aclient)
    assert final_text is streamed and streamed.text == "Here it is."
    assert isinstance(image, ImageView) and image.data is None
    assert len(references) == 2
