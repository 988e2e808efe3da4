"""Offline quality of a finished run, computed from its predictions."""

from collections.abc import Iterable

from river import metrics

from schemas import Prediction


def summarize(predictions: Iterable[Prediction], binary: bool) -> dict[str, float]:
    """Prequential quality over every labelled prediction (each made before learning).

    Binary models: logloss and accuracy at 0.5; regressors: MAE and RMSE.
    """
    chosen: list[metrics.base.Metric] = (
        [metrics.LogLoss(), metrics.Accuracy()] if binary else [metrics.MAE(), metrics.RMSE()]
    )
    labelled = 0
    for p in predictions:
        if p.label is None:
            continue
        labelled += 1
        for metric in chosen:
            if binary and isinstance(metric, metrics.Accuracy):
                metric.update(bool(p.label), p.prediction >= 0.5)
            elif binary:
                metric.update(bool(p.label), p.prediction)
            else:
                metric.update(float(p.label), p.prediction)
    result = {"labelled": float(labelled)}
    if labelled:
        result.update({type(m).__name__.lower(): m.get() for m in chosen})
    return result
