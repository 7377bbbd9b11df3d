"""The Server panel: the OpenAI-compatible API (core/server) switched on and off from the app."""
