"""The built-in models keep their versions wherever their code lives: a version names
what the code does, and every checkpoint and plan of a built-in model is restored only
into the version that wrote it."""

import online_models.models.registry as registry
import riverrun

#: The versions riverrun 0.1.0 gave the built-in models with their default parameters,
#: as the docs show them (`logreg@d79eff0f`), computed by that release's code.
VERSIONS_OF_0_1_0 = {
    "logreg": "logreg@d79eff0f",
    "linreg": "linreg@a10ea1f6",
    "softmax": "softmax@787a0b73",
    "ctr": "ctr@d3afdf3d",
    "clicks": "clicks@7394f02b",
    "ctr_tree": "ctr_tree@ff23f5d8",
    "ctr_forest": "ctr_forest@2917a070",
}
#: The hashes of their source text (what riverrun before 0.1.0 called a version), which
#: `ModelSpec.legacy_version` still recognises.
SOURCE_TEXT_VERSIONS = {
    "logreg": "logreg@cb47a876",
    "linreg": "linreg@bfd9dde0",
    "softmax": "softmax@62cf167c",
    "ctr": "ctr@bebcc900",
    "clicks": "clicks@101bb866",
    "ctr_tree": "ctr_tree@6af19f09",
    "ctr_forest": "ctr_forest@43c974d5",
}


def test_the_built_in_models_keep_the_versions_of_riverrun_0_1_0() -> None:
    models = riverrun.builtin.app.models
    assert {name: spec.version for name, spec in models.items()} == VERSIONS_OF_0_1_0
    assert {name: spec.legacy_version for name, spec in models.items()} == SOURCE_TEXT_VERSIONS


def test_the_built_in_models_are_an_ordinary_app() -> None:
    assert isinstance(riverrun.builtin.app, riverrun.App)
    assert not hasattr(registry, "MODELS") and not hasattr(registry, "register")
    for spec in riverrun.builtin.app.models.values():
        assert spec.factory.__module__ == "riverrun.builtin"
        assert registry.code_name(spec.factory) == f"online_models.registry.{spec.name}"


def test_a_users_factory_is_hashed_under_its_own_name() -> None:
    app = riverrun.App()

    @app.model("mine", task="binary")
    def mine() -> object:
        return riverrun.builtin.app.models["logreg"].create()

    assert registry.code_name(mine) == f"{__name__}.{mine.__qualname__}"
