"""The chat: transcript, composer, system prompt."""
