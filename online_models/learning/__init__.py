"""Learning: predict-then-learn, de-duplication, request time, admission, replicas' checkpoints."""
