"""The built-in ``local`` backend and ``local`` storage: this machine, through TorchX's ``local_cwd``."""
