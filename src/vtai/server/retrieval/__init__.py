"""The vector-store engine: extraction, chunking, embeddings, hybrid search and the ingestion
queue (no HTTP). See engine.py and docs/file-search.md."""
