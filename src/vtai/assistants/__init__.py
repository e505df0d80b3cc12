"""The client module from VT.ai's docs: the documented Assistants API functions, UI-neutral
``process_*`` renderers, function calling, and a streaming :class:`AssistantSession`.

Every function takes an ``openai.AsyncOpenAI`` client pointed at any Assistants v2 server."""

from vtai.assistants.errors import AssistantsError, RunTimeout
from vtai.assistants.files import tool_for
from vtai.assistants.functions import (
    FunctionRegistry,
    current_registry,
    default_registry,
    function_tool,
    process_tool_calls,
    use_functions,
)
from vtai.assistants.messages import process_thread_message
from vtai.assistants.resources import add_message_to_thread, create_assistant, create_thread
from vtai.assistants.runs import TERMINAL_STATUSES, create_run, poll_run, submit_tool_outputs
from vtai.assistants.session import (
    AssistantConfig,
    AssistantSession,
    Attachment,
    SessionListener,
)
from vtai.assistants.steps import (
    process_code_interpreter,
    process_function_call,
    process_retrieval,
    process_run_step,
    process_tool_call,
)
from vtai.assistants.tools import normalize_tools
from vtai.assistants.views import (
    Citation,
    CodeInterpreterView,
    FileSearchView,
    FunctionCallView,
    ImageView,
    MessagePartView,
    Source,
    TextView,
    ToolCallView,
)

__all__ = [
    "TERMINAL_STATUSES",
    "AssistantConfig",
    "AssistantSession",
    "AssistantsError",
    "Attachment",
    "Citation",
    "CodeInterpreterView",
    "FileSearchView",
    "FunctionCallView",
    "FunctionRegistry",
    "ImageView",
    "MessagePartView",
    "RunTimeout",
    "SessionListener",
    "Source",
    "TextView",
    "ToolCallView",
    "add_message_to_thread",
    "create_assistant",
    "create_run",
    "create_thread",
    "current_registry",
    "default_registry",
    "function_tool",
    "normalize_tools",
    "poll_run",
    "process_code_interpreter",
    "process_function_call",
    "process_retrieval",
    "process_run_step",
    "process_thread_message",
    "process_tool_call",
    "process_tool_calls",
    "submit_tool_outputs",
    "tool_for",
    "use_functions",
]
