"""The MAST backend plugin: Forge jobs submitted to MAST through a TorchX scheduler.

Registered in the entry-point group ``forge_launcher.plugins`` as
``mast_backend``; select it with ``+backend=mast``.
"""
