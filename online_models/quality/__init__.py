"""Quality: prequential evaluation, drift detection, offline evaluation."""
