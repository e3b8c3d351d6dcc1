"""This repo's Hydra plugins: the torchrun sweep launcher and the tuned sweeper.

Hydra imports this package before it composes any config (it looks for plugins here), so the
resolvers ``conf/`` uses are registered here, for every entry point and for tests that compose.
"""

from omegaconf import OmegaConf

from alexnet.run.layout import launch_id

OmegaConf.register_new_resolver("launch_id", launch_id, replace=True)  # run directories: <time>-<id>
