"""Serving: the ASGI app, the uvicorn runner, the runtime that builds it all, audit, metrics."""
