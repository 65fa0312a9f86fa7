"""The backend conformance suite, run on MAST through the recording TorchX scheduler."""

from __future__ import annotations

from pathlib import Path

import pytest
from torchx.specs import parse_app_handle

from tests import mast_fake_scheduler as fake
from tests.backend_conformance import BackendConformance

pytestmark = pytest.mark.integration


class TestMastConformance(BackendConformance):
    backend = "mast"
    overrides = ("backend.scheduler_args.hpcIdentity=forge-tests",)

    @pytest.fixture(autouse=True)
    def recording_scheduler(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.env = fake.subprocess_env(tmp_path)
        monkeypatch.setenv(fake.STATE_ENV, self.env[fake.STATE_ENV])

    def finish_job(self, handle: str) -> None:
        # Nothing runs behind the recording scheduler, so the test ends the job.
        fake.set_app(parse_app_handle(handle).app_id, state="SUCCEEDED")
