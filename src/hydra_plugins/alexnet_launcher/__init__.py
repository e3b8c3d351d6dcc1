"""This repo's Hydra plugins: the torchrun sweep launcher and the tuned sweeper.

Hydra imports this package before it composes any config (it looks for plugins here), so the
resolvers ``conf/`` uses are registered here, for every entry point and for tests that compose.
"""

from omegaconf import OmegaConf

from alexnet.run.layout import launch_id
from alexnet.run.slurm import cpus_per_task, gpus_per_node, record_subdir

OmegaConf.register_new_resolver("launch_id", launch_id, replace=True)  # run directories: <time>-<id>
OmegaConf.register_new_resolver("run_record", record_subdir, replace=True)  # hydra.output_subdir
OmegaConf.register_new_resolver("slurm_gpus_per_node", gpus_per_node, replace=True)  # hydra/launcher=slurm
# asks sinfo once per config, however often the key is read
OmegaConf.register_new_resolver("slurm_cpus_per_task", cpus_per_task, replace=True, use_cache=True)
