"""The /v1 HTTP API: predictions and forwarding, ingest, SSE, partition ownership, ports."""
