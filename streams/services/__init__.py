"""The worker's services: the events path, the feedback join, push sinks."""
