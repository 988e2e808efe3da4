"""The reader of a registered schema, by its type: Avro, JSON Schema or Protobuf.

>>> reader_for(RegisteredSchema(3, "JSON", '{"type": "object"}')).read(b'{"page": "/home"}')
{'page': '/home'}
>>> try:
...     reader_for(RegisteredSchema(4, "THRIFT", "struct Click {}"))
... except InvalidMessage as err:
...     print(err.reason.split(":")[0])
schema 4 is of type THRIFT, which riverrun does not read
"""

from schemas.codec import InvalidMessage
from schemas.dead_letter import ErrorType
from schemas.formats.avro import AvroReader
from schemas.formats.json_records import JsonReader
from schemas.formats.wire import RecordReader, RegisteredSchema

__all__ = ["reader_for"]


def reader_for(schema: RegisteredSchema) -> RecordReader:
    """The reader of the payloads written with `schema`.

    Raises InvalidMessage(ErrorType.UNDECODABLE) when the schema cannot be used (a type
    riverrun does not read, a schema its library refuses): every record naming it is then
    undecodable, for the same reason. Nothing is cached here: the caller keeps a reader per
    schema id.
    """
    if schema.schema_type == "AVRO":
        return AvroReader(schema)
    if schema.schema_type == "JSON":
        return JsonReader(schema)
    if schema.schema_type == "PROTOBUF":
        # Imported here: the Protobuf runtime is loaded only by topics that carry Protobuf.
        from schemas.formats.protobuf import ProtobufReader

        return ProtobufReader(schema)
    raise InvalidMessage(
        ErrorType.UNDECODABLE,
        f"schema {schema.id} is of type {schema.schema_type}, which riverrun does not read: "
        "produce the topic's values with an AVRO, JSON (JSON Schema) or PROTOBUF schema",
    )
