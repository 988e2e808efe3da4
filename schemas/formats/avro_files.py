"""The committed Avro schemas, schemas/avro/*.avsc, written by `riverrun schemas export`
next to the JSON Schemas they are derived from (`schemas.formats.avro_schema`)."""

from pydantic import BaseModel

from schemas.formats.avro_schema import avro_text
from schemas.input_event import InputEvent
from schemas.prediction import AVRO_RECORDS

__all__ = ["AVRO_FILES", "render_all"]

#: File name (in schemas/avro) -> the models whose union it holds (one: a record).
AVRO_FILES: dict[str, tuple[type[BaseModel], ...]] = {
    "prediction.avsc": AVRO_RECORDS,
    "input_event.avsc": (InputEvent,),
}


def render_all() -> dict[str, str]:
    """Every committed Avro schema file name and its expected text."""
    return {name: avro_text(*models) for name, models in AVRO_FILES.items()}
