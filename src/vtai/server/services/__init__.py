"""Use cases: what each request does, with the store and the engine; no HTTP."""
