"""The models a worker serves, checked before it starts."""

import pytest

import riverrun
from online_models.models.registry import ModelError
from streams.runtime.served_models import served_models
from streams.settings import Settings

BUILTIN = riverrun.builtin.app.models


def test_the_join_models_and_their_parameters_are_checked_with_the_served_ones() -> None:
    settings = Settings(
        join_enabled=True,
        products=["shoes"],
        models=["logreg"],
        model_params={"logreg": {"lr": 0.1}, "propensity_shoes": {"alpha": 0.2}},
    )
    assert list(served_models(settings, BUILTIN)) == ["logreg"]
    wrong = settings.model_copy(update={"model_params": {"propensity_shoes": {"alfa": 0.2}}})
    with pytest.raises(ModelError, match=r"'propensity_shoes' .* cannot be built with"):
        served_models(wrong, BUILTIN)
    typo = settings.model_copy(update={"model_params": {"propensity_bags": {"alpha": 0.2}}})
    with pytest.raises(ModelError, match=r"no model named 'propensity_bags'"):
        served_models(typo, BUILTIN)


@pytest.mark.parametrize(
    ("setting", "name", "message"),
    [
        ("ctr_model", "nope", "RIVERRUN_CTR_MODEL is 'nope', which the app does not have"),
        ("propensity_model", "linreg", "RIVERRUN_PROPENSITY_MODEL is 'linreg', a regression model"),
    ],
)
def test_the_join_needs_binary_models_of_the_app(setting: str, name: str, message: str) -> None:
    settings = Settings(join_enabled=True, **{setting: name})  # type: ignore[arg-type]
    with pytest.raises(ModelError, match=message):
        served_models(settings, BUILTIN)
