"""Kafka: the client layer, topics, outputs and their delivery bookkeeping, the local broker."""
