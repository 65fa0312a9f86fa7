"""The ``slurm`` backend: a Forge job as one heterogeneous Slurm job, through TorchX's ``slurm`` scheduler."""
