"""The inference engine: a worker process owning llama_cpp.Llama, and the parent-side client."""
