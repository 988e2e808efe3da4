"""riverrun's built-in models as an app: the default when no `--app` is given.

Include them in your own app with `riverrun.App(include=[riverrun.builtin.app])`.
"""

from online_models.models.registry import MODELS
from riverrun.app import App

app = App()
for _spec in MODELS.values():
    app._add(_spec)
