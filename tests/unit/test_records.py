"""Job records: saving, finding by name or handle."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from forge_launcher.errors import JobNotFoundError
from forge_launcher.records import JobRecord, find_record, load_records, save_record


def make_record(tmp_path: Path, name: str, created: str) -> JobRecord:
    job_dir = tmp_path / name
    job_dir.mkdir()
    return JobRecord(name=name, backend="local", storage="local", job_dir=str(job_dir), config_path="c.yaml",
                     detached=True, created=created, handle=f"local_cwd://forge/{name}-x")


def test_save_and_find(tmp_path: Path) -> None:
    save_record(make_record(tmp_path, "a", "2026-01-01T00:00:00"))
    save_record(make_record(tmp_path, "b", "2026-01-02T00:00:00"))
    assert find_record("a").name == "a"
    assert find_record("local_cwd://forge/b-x").name == "b"
    assert [r.name for r in load_records()] == ["b", "a"]
    assert json.loads((tmp_path / "a" / "job.json").read_text())["handle"] == "local_cwd://forge/a-x"


def test_find_unknown_is_user_error() -> None:
    with pytest.raises(JobNotFoundError, match="forge list"):
        find_record("ghost")


def test_unknown_fields_ignored(tmp_path: Path) -> None:
    data = {"name": "n", "backend": "local", "storage": "local", "job_dir": "/x", "config_path": "c", "detached": False,
            "created": "t", "added_later": 1}
    assert JobRecord.from_dict(data).name == "n"


def test_list_survives_failing_status(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from forge_launcher import lifecycle
    from forge_launcher.errors import ForgeLauncherError

    save_record(make_record(tmp_path, "ok", "2026-01-01T00:00:00"))
    broken = make_record(tmp_path, "broken", "2026-01-02T00:00:00")
    broken.extra["raise"] = True
    save_record(broken)

    real = lifecycle._status_of

    def flaky(record, registry):
        if record.extra.get("raise"):
            raise ForgeLauncherError("scheduler unreachable")
        return real(record, registry)

    monkeypatch.setattr(lifecycle, "_status_of", flaky)
    statuses = {s.name: s for s in lifecycle.list_jobs()}
    assert statuses["broken"].state == "UNKNOWN"
    assert "scheduler unreachable" in statuses["broken"].message
    assert "ok" in statuses


def test_find_long_name_not_found() -> None:
    with pytest.raises(JobNotFoundError):
        find_record("x" * 300)


def test_list_includes_other_home_jobs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from forge_launcher import lifecycle

    storage = tmp_path / "storage" / "forge_runs"
    storage.mkdir(parents=True)
    monkeypatch.setenv("FORGE_HOME", str(tmp_path / "home_a"))
    save_record(make_record(storage, "mine", "2026-01-01T00:00:00"))
    monkeypatch.setenv("FORGE_HOME", str(tmp_path / "home_b"))
    save_record(make_record(storage, "theirs", "2026-01-02T00:00:00"))

    monkeypatch.setenv("FORGE_HOME", str(tmp_path / "home_a"))
    names = [status.name for status in lifecycle.list_jobs()]
    assert names == ["mine", "theirs"]
