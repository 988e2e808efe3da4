"""What every contender shares: its command line and the model factory.

Each contender does, per input message: decode the JSON event, predict the click
probability, learn from the label, encode `{"event_id", "prediction"}` as JSON and produce
it keyed by event id. That is less than riverrun does per event (no validation, no dead
letters, no metrics): the comparison favours the contenders.
"""

import argparse

from online_models.registry import MODELS


def arguments(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--events", type=int, required=True)
    return parser.parse_args()


def model():  # type: ignore[no-untyped-def]
    """The same River model the riverrun worker serves for these events."""
    return MODELS["logreg"].create()
