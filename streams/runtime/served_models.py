"""Which of the app's models a worker serves, each checked before the worker starts."""

from collections.abc import Mapping

from online_models.models.registry import ModelError, ModelSpec, resolve
from streams.settings import Settings


def served_models(settings: Settings, models: Mapping[str, ModelSpec]) -> dict[str, ModelSpec]:
    """The models `settings` serve from the app's `models`, parameters applied, each built
    once; raises ModelError (one sentence) for any that cannot serve."""
    propensity = tuple(f"propensity_{product}" for product in settings.products)
    names = settings.model_names(models)
    specs = resolve(models, names, settings.model_params, other_names=propensity)
    if settings.join_enabled:
        join_models = {
            "RIVERRUN_CTR_MODEL": settings.ctr_model,
            "RIVERRUN_PROPENSITY_MODEL": settings.propensity_model,
        }
        for setting, name in join_models.items():
            if name not in models:
                raise ModelError(
                    f"{setting} is {name!r}, which the app does not have (it has: "
                    f"{', '.join(sorted(models))}); name one of its binary models"
                )
            if models[name].task != "binary":
                raise ModelError(
                    f"{setting} is {name!r}, a {models[name].task} model; the join learns "
                    "clicks and conversions (true/false): name a binary model"
                )
        # The join's own replicas, built once each like the served ones.
        own = {settings.ctr_model: models[settings.ctr_model]}
        own |= {name: models[settings.propensity_model].renamed(name) for name in propensity}
        params = {name: settings.model_params.get(name, {}) for name in own}
        resolve(own, list(own), params)
    return specs
