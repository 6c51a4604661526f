"""`kame bench`: latency of each stage, printed as figures (targets live here, never in tests)."""
