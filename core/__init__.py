"""forge-launcher: run Forge post-training jobs on this machine, Slurm or MAST."""

import pluggy

__version__ = "0.1.0"

#: Decorates a plugin's hook implementations: ``@forge_launcher.hookimpl``.
hookimpl = pluggy.HookimplMarker("forge_launcher")
