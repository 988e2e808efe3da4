"""riverrun's built-in models by name (`riverrun.builtin.app.models`), which most tests
serve."""

import riverrun.builtin

MODELS = riverrun.builtin.app.models
