"""Model loading (any Hugging Face causal LM, GGUF files, the built-in tiny policy)."""
