"""The user's documents behind the oracle: loaded, cut into passages, indexed (SQLite FTS5, BM25,
optionally with embeddings), and retrieved for each oracle request from the user's words.

Nothing here imports anything heavy at import time: pypdf and LiteLLM load when a PDF or an
embedding model needs them.
"""
