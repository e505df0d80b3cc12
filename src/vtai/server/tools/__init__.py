"""Built-in tools that run inside the server: code_interpreter and file_search."""
