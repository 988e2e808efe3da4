"""Model versions: plans, signing, routing, gate, rollback, experiments, bandits."""
