"""Records in a team's own format: the Confluent wire format, Avro, JSON Schema and
Protobuf payloads, and the mapping of any record to an `InputEvent`. No I/O: the schemas
come from `streams.registry`, which fetches them from a schema registry.
"""
