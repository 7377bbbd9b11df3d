"""LlamaDesk's Qt views. Shows core's state and sends user intent to it; no domain logic here."""
