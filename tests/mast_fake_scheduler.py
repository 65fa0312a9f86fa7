"""A TorchX scheduler for tests that records what it is given instead of running it.

MAST cannot be reached from the test machines, so the tests register this
scheduler under the name the MAST backend is configured with (``mast_conda``
by default) and drive the plugin through TorchX's runner exactly as on MAST.

Registration uses the mechanism TorchX 0.7.0 reads: the entry-point group
``torchx.schedulers`` (``torchx.schedulers.get_scheduler_factories``).
:func:`install` writes a throwaway ``.dist-info`` directory that declares the
entry point. Putting its parent directory on ``PYTHONPATH`` (for a ``forge``
subprocess) or on ``sys.path`` (for this process) registers the scheduler.

State lives in the directory named by ``FORGE_TEST_MAST_STATE``, so a test
and the ``forge`` subprocesses it starts see the same jobs:

* ``<app_id>.json``: the request (AppDef and run options), state, replica
  hostnames and UI URL of one submitted app.
* ``submissions.jsonl``: one line per ``schedule`` call, in order.
* ``logs/<app_id>/<role>/<replica>.log``: lines returned by ``log_iter``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torchx.schedulers.api import DescribeAppResponse, ListAppResponse, Scheduler
from torchx.specs import AppDef, AppDryRunInfo, AppState, ReplicaState, ReplicaStatus, RoleStatus, runopts

STATE_ENV = "FORGE_TEST_MAST_STATE"
DIST_NAME = "forge_test_mast_scheduler"
#: Run options the recording scheduler requires, like MAST's identity option.
REQUIRED_OPTIONS = ("hpcIdentity",)
OPTIONAL_OPTIONS = ("hpcJobOncall", "hpcClusterUuid", "rmAttribution")


@dataclass
class RecordedRequest:
    """What ``submit_dryrun`` builds: the app as plain data plus the run options."""

    app_id: str
    app: dict[str, Any]
    cfg: dict[str, Any]


def state_dir() -> Path:
    value = os.environ.get(STATE_ENV)
    if not value:
        raise RuntimeError(f"{STATE_ENV} is not set: the recording scheduler needs a state directory.")
    path = Path(value)
    path.mkdir(parents=True, exist_ok=True)
    return path


def app_to_dict(app: AppDef) -> dict[str, Any]:
    """Describe an AppDef as JSON-ready data, env values included."""
    roles = []
    for role in app.roles:
        roles.append({
            "name": role.name,
            "image": role.image,
            "entrypoint": role.entrypoint,
            "args": list(role.args),
            "env": dict(role.env),
            "num_replicas": role.num_replicas,
            "resource": {
                "cpu": role.resource.cpu,
                "gpu": role.resource.gpu,
                "memMB": role.resource.memMB,
                "capabilities": dict(role.resource.capabilities),
            },
        })
    return {"name": app.name, "roles": roles, "metadata": dict(app.metadata)}


def _app_file(app_id: str) -> Path:
    return state_dir() / f"{app_id}.json"


def read_app(app_id: str) -> dict[str, Any] | None:
    """Return the recorded app ``app_id``, or ``None`` if it was never submitted."""
    try:
        return json.loads(_app_file(app_id).read_text())
    except FileNotFoundError:
        return None


def write_app(app_id: str, data: dict[str, Any]) -> None:
    path = _app_file(app_id)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
    os.replace(tmp, path)


def set_app(app_id: str, **changes: Any) -> None:
    """Change fields of a recorded app (``state``, ``hostnames``, ``ui_url``), creating it if needed."""
    data = read_app(app_id) or {"request": {"app_id": app_id, "app": {"name": app_id, "roles": []}, "cfg": {}}, "state": "RUNNING", "hostnames": {}, "ui_url": ""}
    data.update(changes)
    write_app(app_id, data)


def submissions() -> list[dict[str, Any]]:
    """Return every request ``schedule`` received, oldest first."""
    path = state_dir() / "submissions.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_log(app_id: str, role: str, replica: int, text: str) -> None:
    path = state_dir() / "logs" / app_id / role / f"{replica}.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


class RecordingScheduler(Scheduler[dict]):
    """Records submissions in the state directory and reports the states stored there."""

    def __init__(self, session_name: str, backend: str = "mast_conda") -> None:
        super().__init__(backend, session_name)

    def _run_opts(self) -> runopts:
        opts = runopts()
        for name in REQUIRED_OPTIONS:
            opts.add(name, type_=str, required=True, help="required by the recording scheduler")
        for name in OPTIONAL_OPTIONS:
            opts.add(name, type_=str, default=None, help="recorded as given")
        return opts

    def _submit_dryrun(self, app: AppDef, cfg: dict) -> AppDryRunInfo:
        request = RecordedRequest(app_id=app.name, app=app_to_dict(app), cfg=dict(cfg))
        return AppDryRunInfo(request, lambda r: json.dumps({"app_id": r.app_id, "app": r.app, "cfg": r.cfg}, indent=2, sort_keys=True))

    def schedule(self, dryrun_info: AppDryRunInfo) -> str:
        request: RecordedRequest = dryrun_info.request
        existing = read_app(request.app_id)
        if existing is not None and existing["state"] not in ("SUCCEEDED", "FAILED", "CANCELLED"):
            raise RuntimeError(f"app {request.app_id} is already {existing['state']}")

        data = {"app_id": request.app_id, "app": request.app, "cfg": request.cfg}
        with open(state_dir() / "submissions.jsonl", "a") as handle:
            handle.write(json.dumps(data, sort_keys=True) + "\n")
        hostnames = {
            role["name"]: [f"{role['name']}-{i}.hosts.test" for i in range(role["num_replicas"])]
            for role in request.app["roles"]
        }
        write_app(request.app_id, {"request": data, "state": "RUNNING", "hostnames": hostnames, "ui_url": f"https://mast.invalid/jobs/{request.app_id}"})
        return request.app_id

    def describe(self, app_id: str) -> DescribeAppResponse | None:
        data = read_app(app_id)
        if data is None:
            return None
        state = AppState[data["state"]]
        roles_statuses = []
        for role in data["request"]["app"]["roles"]:
            names = data.get("hostnames", {}).get(role["name"], [])
            replicas = [
                ReplicaStatus(id=i, state=ReplicaState(state.value), role=role["name"], hostname=names[i] if i < len(names) else "")
                for i in range(role["num_replicas"])
            ]
            roles_statuses.append(RoleStatus(role["name"], replicas))
        return DescribeAppResponse(app_id=app_id, state=state, msg=data.get("msg", ""), ui_url=data.get("ui_url") or None, roles_statuses=roles_statuses)

    def list(self) -> list[ListAppResponse]:
        return [ListAppResponse(app_id=path.stem, state=AppState[json.loads(path.read_text())["state"]]) for path in state_dir().glob("*.json")]

    def _cancel_existing(self, app_id: str) -> None:
        set_app(app_id, state="CANCELLED")

    def log_iter(self, app_id: str, role_name: str, k: int = 0, regex: str | None = None, since: Any = None, until: Any = None,
                 should_tail: bool = False, streams: Any = None) -> Iterable[str]:
        path = state_dir() / "logs" / app_id / role_name / f"{k}.log"
        if not path.exists():
            return iter([])
        return iter(path.read_text().splitlines(keepends=True))


def create_scheduler(session_name: str, **kwargs: Any) -> RecordingScheduler:
    """Return the recording scheduler; TorchX's runner calls this through the entry point."""
    return RecordingScheduler(session_name)


def install(site_dir: Path, names: tuple[str, ...] = ("mast_conda",)) -> Path:
    """Write a ``.dist-info`` under ``site_dir`` that registers this scheduler as each of ``names``.

    TorchX 0.7.0 uses only the entry points of ``torchx.schedulers`` once any
    exists, so ``local_cwd`` is registered again next to them. Returns ``site_dir``.
    """
    dist_info = site_dir / f"{DIST_NAME}-0.0.0.dist-info"
    dist_info.mkdir(parents=True, exist_ok=True)
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {DIST_NAME}\nVersion: 0.0.0\n")
    lines = ["[torchx.schedulers]"]
    lines += [f"{name} = tests.mast_fake_scheduler:create_scheduler" for name in names]
    lines.append("local_cwd = torchx.schedulers.local_scheduler:create_scheduler")
    (dist_info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    return site_dir


def subprocess_env(tmp_path: Path, names: tuple[str, ...] = ("mast_conda",)) -> dict[str, str]:
    """Install the scheduler under ``tmp_path`` and return the environment a ``forge`` subprocess needs."""
    repo_root = Path(__file__).resolve().parent.parent
    site = install(tmp_path / "fake_scheduler_site", names)
    paths = [str(site), str(repo_root)]
    if os.environ.get("PYTHONPATH"):
        paths.append(os.environ["PYTHONPATH"])
    return {"PYTHONPATH": os.pathsep.join(paths), STATE_ENV: str(tmp_path / "fake_scheduler_state")}
