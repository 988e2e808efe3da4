"""The worker's runtime: Faust worker, partitioned mechanism, checkpoints, control, metrics."""
