"""LLM service: streaming, cancellable chat generation over gRPC (llama-cpp-python)."""
