"""``vtai chat``: a terminal client for an Assistants v2 server, streaming like the UI."""
