"""The only package that touches Kafka, the environment and HTTP: app, agents, CLI."""
