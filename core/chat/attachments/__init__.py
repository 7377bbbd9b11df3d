"""Files attached to a chat message: documents read as text (extraction), cut into chunks (chunks), indexed
for full-text search with SQLite FTS5 (index), given vectors by an embedding model (meaning, vectors), and the
parts a question needs chosen to fit the context (retrieval). The values a message carries (Attachment, Source)
live in attachment.py."""
