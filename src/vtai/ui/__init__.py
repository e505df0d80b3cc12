"""The chat UI: a Chainlit app in VT.ai's Assistant mode, on any Assistants v2 server."""
