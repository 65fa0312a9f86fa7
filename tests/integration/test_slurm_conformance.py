"""The Slurm backend passes the shared backend conformance suite on a real cluster."""

import pytest

from tests.backend_conformance import BackendConformance
from tests.slurm.cluster import SMALL_JOB, requires_slurm

pytestmark = [pytest.mark.integration, requires_slurm]


class TestSlurmConformance(BackendConformance):
    backend = "slurm"
    # The suite adds +backend itself.
    overrides = SMALL_JOB[1:]
    finish_timeout = 180.0
