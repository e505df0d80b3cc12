"""VT.ai Assistants."""
