"""The local backend passes the shared backend conformance suite."""

import pytest

from tests.backend_conformance import BackendConformance

pytestmark = pytest.mark.integration


class TestLocalConformance(BackendConformance):
    backend = "local"
