"""Request models: what each endpoint takes, checked as OpenAI checks it (no I/O)."""
