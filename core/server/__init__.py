"""The OpenAI-compatible HTTP API over LlamaDesk's engine (ARCHITECTURE §3, "Server").

    config = ServerConfig(host="127.0.0.1", port=8080)
    host = ModelHost(HostOptions(idle_unload_seconds=600))
    server = ServerRunner(create_app(config, host), config)   # serving.py: CLI in the main thread, GUI in a thread

Modules: config (where and how it listens, its limits), errors (OpenAI error objects), schemas (request
validation), grammar (response_format and forced tool calls as GBNF), request_queue (slots and the waiting line),
model_host (which model is loaded, loading on demand, idle unload), answers (engine events -> OpenAI objects),
streaming (server-sent events), app (the FastAPI routes and guards), serving (uvicorn start and stop).
"""
