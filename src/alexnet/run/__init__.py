"""A run's life, above the Lightning parts: its directory and record, its config recovered, and
train(), from a composed config to results.json."""
