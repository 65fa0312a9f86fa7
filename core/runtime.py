"""Helpers for workloads started by ``forge bootstrap``.

A workload reads its config from ``--config`` and finds its worker meshes
here. Monarch is imported only by :func:`attach_mesh`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from forge_launcher.errors import ProvisionError


def mesh_addresses() -> dict[str, list[str]]:
    """Return ``{mesh name: [worker address per host]}`` written by ``forge bootstrap``."""
    path = os.environ.get("FORGE_PROVISION_FILE")
    if not path:
        raise ProvisionError("FORGE_PROVISION_FILE is not set: this process was not started by 'forge bootstrap'.")
    return json.loads(Path(path).read_text())["meshes"]


def job_dir() -> Path:
    """Return the job directory, where results and checkpoints belong."""
    value = os.environ.get("FORGE_JOB_DIR")
    if not value:
        raise ProvisionError("FORGE_JOB_DIR is not set: this process was not started by 'forge bootstrap'.")
    return Path(value)


def attach_mesh(name: str) -> Any:
    """Attach to the worker mesh ``name`` with Monarch and wait until every host is connected."""
    from monarch.actor import attach_to_workers

    addresses = mesh_addresses()
    if name not in addresses:
        raise ProvisionError(f"No worker mesh named {name!r}; this job has {sorted(addresses)}.")
    host_mesh = attach_to_workers(workers=addresses[name], ca="trust_all_connections", name=name)
    host_mesh.initialized.get()
    return host_mesh
