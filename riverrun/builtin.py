"""riverrun's built-in models, registered on an app the way users register theirs: the
default app when no `--app` is given (`RIVERRUN_APP=riverrun.builtin:app`).

Include them in your own app with `riverrun.App(include=[riverrun.builtin.app])`.

Each model's version hashes its factory as riverrun 0.1.0 had it (in
`online_models.registry`, registered with `@register(...)`): see
`online_models.models.registry.FORMER_NAMES`. Checkpoints and plans of the built-in models
stay theirs across releases.

Examples
--------
>>> app.models["logreg"].task
'binary'
"""

import math
from typing import Any

from river import base, compose, forest, linear_model, optim, tree

from online_models.models.features import HashedFeatures, LogFeatures, mixed_features
from riverrun.app import App

app = App()


@app.model("logreg", task="binary", lr=0.05, l2=0.0)
def logreg(lr: float, l2: float) -> base.Estimator:
    """Binary click model: mixed-feature encoding + logistic regression (SGD)."""
    return mixed_features() | linear_model.LogisticRegression(optimizer=optim.SGD(lr), l2=l2)


@app.model("linreg", task="regression", lr=0.01, l2=0.0)
def linreg(lr: float, l2: float) -> base.Estimator:
    """Regression model: mixed-feature encoding + linear regression (SGD)."""
    return mixed_features() | linear_model.LinearRegression(optimizer=optim.SGD(lr), l2=l2)


@app.model("softmax", task="multiclass", lr=0.1, l2=0.0)
def softmax(lr: float, l2: float) -> base.Estimator:
    """Multiclass model: mixed-feature encoding + softmax regression (SGD)."""
    return mixed_features() | linear_model.SoftmaxRegression(optimizer=optim.SGD(lr), l2=l2)


@app.model("ctr", task="binary", alpha=0.05, beta=1.0, l1=0.0, l2=1.0, n_features=2**18, seed=0)
def ctr(
    alpha: float, beta: float, l1: float, l2: float, n_features: int, seed: int
) -> base.Estimator:
    """Click/propensity model: hashed categoricals + scaled numerics, logistic regression
    trained by FTRL-Proximal (per-coordinate adaptive learning rates, optional L1)."""
    optimizer = optim.FTRLProximal(alpha=alpha, beta=beta, l1=l1, l2=l2)
    return HashedFeatures(n_features, seed) | linear_model.LogisticRegression(
        optimizer=optimizer, intercept_lr=alpha
    )


# Day of month and month are dropped by default: as numbers they only encode the trend of
# the few days seen so far, and their early z-scores are huge; the day of the week (a
# string) carries the weekly seasonality.
@app.model(
    "clicks",
    task="regression",
    lr=0.3,
    intercept_lr=0.05,
    log=("price",),
    drop=("date", "day_of_month", "month"),
)
def clicks(
    lr: float, intercept_lr: float, log: tuple[str, ...], drop: tuple[str, ...]
) -> base.Estimator:
    """Click-count model: squared loss on `log1p(clicks)` (AdaGrad), predictions mapped back
    with `expm1` — i.e. it predicts the median-like count MAE rewards. Prices enter as logs."""
    encode = compose.Discard(*drop) | LogFeatures(names=tuple(log)) | mixed_features()
    regressor: Any = encode | linear_model.LinearRegression(
        optimizer=optim.AdaGrad(lr), intercept_lr=intercept_lr
    )
    return compose.TargetTransformRegressor(regressor, func=math.log1p, inverse_func=math.expm1)


@app.model("ctr_tree", task="binary", grace_period=200, max_depth=20)
def ctr_tree(grace_period: int, max_depth: int) -> base.Estimator:
    """Non-linear click model: a Hoeffding tree on the raw features (strings are nominal
    splits). Fast (~40k events/s alone) but its state grows with the tree (~5 MB after
    30k events) and its leaf probabilities are poorly calibrated."""
    return tree.HoeffdingTreeClassifier(grace_period=grace_period, max_depth=max_depth)


@app.model("ctr_forest", task="binary", n_models=5, seed=1)
def ctr_forest(n_models: int, seed: int) -> base.Estimator:
    """Non-linear click model: an adaptive random forest of Hoeffding trees. Slow (~2.4k
    events/s alone) and large (~80 MB pickled after 30k events): for low-volume streams."""
    return forest.ARFClassifier(n_models=n_models, seed=seed)
