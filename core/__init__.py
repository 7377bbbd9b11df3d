"""LlamaDesk's domain: models, memory plans, the engine, chats. Pure Python; never imports Qt."""
