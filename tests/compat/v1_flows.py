"""Core flows driven by an old openai 1.x SDK; run by test_openai_v1.py in its own venv.

Usage: python v1_flows.py BASE_URL TEXT_MODEL TOOL_MODEL STREAM_MODEL
"""

import json
import sys

import openai
from openai import AssistantEventHandler, OpenAI

base_url, text_model, tool_model, stream_model = sys.argv[1:5]
assert openai.__version__.startswith("1."), openai.__version__
client = OpenAI(base_url=base_url, api_key="x", max_retries=0)

# CRUD
assistant = client.beta.assistants.create(model=text_model, name="v1", metadata={"a": "b"})
assert client.beta.assistants.retrieve(assistant.id).name == "v1"
assert client.beta.assistants.update(assistant.id, name="v1b").name == "v1b"
thread = client.beta.threads.create(messages=[{"role": "user", "content": "hello"}])
client.beta.threads.messages.create(thread.id, role="user", content="second")
assert len(list(client.beta.threads.messages.list(thread.id, limit=1))) == 2

# a run, polled
run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
assert run.status == "completed", run
reply = client.beta.threads.messages.list(thread.id).data[0]
assert reply.content[0].text.value == "v1 text reply", reply

# tool outputs
tool_assistant = client.beta.assistants.create(model=tool_model, tools=[{
    "type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}])
run = client.beta.threads.runs.create_and_poll(thread_id=thread.id,
                                               assistant_id=tool_assistant.id)
assert run.status == "requires_action", run
call = run.required_action.submit_tool_outputs.tool_calls[0]
assert json.loads(call.function.arguments) == {"q": "x"}
run = client.beta.threads.runs.submit_tool_outputs_and_poll(
    run_id=run.id, thread_id=thread.id, tool_outputs=[{"tool_call_id": call.id, "output": "42"}])
assert run.status == "completed", run

# streaming with an event handler
stream_assistant = client.beta.assistants.create(model=stream_model)
deltas = []


class Handler(AssistantEventHandler):
    def on_text_delta(self, delta, snapshot):  # type: ignore[no-untyped-def]
        deltas.append(delta.value)


with client.beta.threads.runs.stream(thread_id=thread.id, assistant_id=stream_assistant.id,
                                     event_handler=Handler()) as stream:
    stream.until_done()
assert "".join(deltas) == "streamed by v1", deltas

assert client.beta.threads.delete(thread.id).deleted
assert client.beta.assistants.delete(assistant.id).deleted
print("v1 flows ok")
