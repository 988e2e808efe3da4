"""A structural comparison of learnt state, for tests.

Pickled bytes of equal River models can differ: a set restored from a checkpoint
iterates in another order than one built by insertion. `fingerprint` turns an object
graph into plain nested tuples with sets sorted, so equal states compare equal.
"""

import pickle
from collections import deque
from typing import Any


def fingerprint(obj: Any, _seen: frozenset[int] = frozenset()) -> Any:
    if obj is None or isinstance(obj, bool | int | float | str | bytes):
        return obj
    if id(obj) in _seen:
        return ("<cycle>", type(obj).__qualname__)
    seen = _seen | {id(obj)}
    if isinstance(obj, dict):
        return ("dict", tuple((fingerprint(k, seen), fingerprint(v, seen)) for k, v in obj.items()))
    if isinstance(obj, list | tuple | deque):
        return (type(obj).__name__, tuple(fingerprint(v, seen) for v in obj))
    if type(obj).__module__.startswith("sortedcontainers"):  # its index layout varies
        return ("sorted", tuple(fingerprint(v, seen) for v in obj))
    if isinstance(obj, set | frozenset):
        return ("set", tuple(sorted((fingerprint(v, seen) for v in obj), key=repr)))
    if callable(obj) and not hasattr(obj, "__dict__"):
        return ("callable", getattr(obj, "__qualname__", repr(obj)))
    state: dict[str, Any] = {}
    if hasattr(obj, "__dict__"):
        state.update(vars(obj))
    for name in getattr(type(obj), "__slots__", ()):
        if hasattr(obj, name):
            state[name] = getattr(obj, name)
    if not state:  # e.g. River's Rust ADWIN: its repr has an address, its pickle the state
        try:
            return (type(obj).__qualname__, pickle.dumps(obj))
        except (TypeError, pickle.PicklingError):
            return (type(obj).__qualname__, repr(obj))
    return (type(obj).__qualname__, fingerprint(dict(sorted(state.items())), seen))
