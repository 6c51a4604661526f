"""The oracle back-end: any LLM through LiteLLM, streamed into the front-end's oracle stream.

`producer.OracleProducer` (KAME's restart policy), `config` (the `[llm]`, `[prompt]`, `[policy]`
tables), `llm.LlmClient` (bounded LiteLLM streams), `local_server.LocalLlamaServer` (llama.cpp as
a child process), `ollama` (model check and pull). Nothing heavy is imported here.
"""
