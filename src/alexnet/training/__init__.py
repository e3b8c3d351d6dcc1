"""Training: the Lightning system, its callbacks and loggers, resuming, and one run from config to results."""
