"""Model providers: where a run's model is served."""
