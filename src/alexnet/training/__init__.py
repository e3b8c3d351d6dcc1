"""The Lightning parts: the system, its callbacks, strategies, checkpoint IO and loggers, and the
evaluation through Trainer.test. They take built objects, never a Hydra config."""
