"""Tools the oracle's LLM may call: MCP servers named in a profile's `[[tools]]`, hosted in the
back-end beside the oracle producer, so a tool runs while the voice goes on."""
