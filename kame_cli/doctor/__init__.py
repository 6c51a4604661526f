"""`kame doctor`: a pre-flight check of everything a session needs, before any download or load.

One module per subject (`system`, `memory`, `stt`, `frontend`, `audio`, `llm`, `disk`); each returns
`Check`s. `run.py` puts them in order; nothing here downloads, starts or changes anything.
"""
