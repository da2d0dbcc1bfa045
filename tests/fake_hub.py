"""An in-memory stand-in for the Hugging Face Hub HTTP API, served on 127.0.0.1 for tests.

It implements only what huggingface_hub 2.4 and datasets 5.2 call during `DatasetDict.push_to_hub`,
`HfApi.upload_file` / `DatasetCard.push_to_hub` and reading a file back (found by reading the client source):

    GET  /api/{type}s/{ns}/{name}[/revision/{rev}]          repo info          (HfApi.repo_info)
    POST /api/repos/create                                  create repo        (HfApi.create_repo)
    POST /api/{type}s/{ns}/{name}/preupload/{rev}           upload modes       (_commit_api._fetch_upload_modes)
    POST /{prefix}{ns}/{name}.git/info/lfs/objects/batch    LFS batch          (lfs.post_lfs_batch_info)
    PUT  /_fake_lfs/{oid}                                   LFS object upload  (lfs._upload_single_part)
    POST /api/validate-yaml                                 README metadata    (HfApi._validate_yaml)
    POST /api/{type}s/{ns}/{name}/commit/{rev}              ndjson commit      (_commit_api._send_commit)
    GET  /api/{type}s/{ns}/{name}/tree/{rev}[/{path}]       tree listing       (HfApi.list_repo_tree, HfFileSystem)
    POST /api/{type}s/{ns}/{name}/paths-info/{rev}          paths info         (HfApi.get_paths_info)
    GET|HEAD /{prefix}{ns}/{name}/resolve/{rev}/{path}      file download      (HfFileSystem, hf_hub_download)
    GET  /api/whoami-v2                                     whoami
    GET  /api/agent-harnesses                               404 (huggingface_hub's agent detection asks once)

Binary and data files (parquet, arrow, ...) get upload mode "lfs" like on the real Hub: `datasets` deletes each
temporary parquet shard right after `preupload_lfs_files`, so a "regular" answer would make its commit fail. The
Xet protocol is turned off by the fixture, so LFS objects arrive through the basic LFS transfer (one PUT each).

Each repo keeps its commit history in memory (commit -> {path: bytes}); every request is recorded with its
headers and body, so a test can check where a token went. `FakeHub.fail_next` makes chosen endpoints answer
with an error status for the next M requests.

Usage (import the fixture into the test module; tests/conftest.py is not involved):

    from fake_hub import FAKE_TOKEN, fake_hub  # noqa: F401

    def test_push(fake_hub):
        fake_hub.fail_next("commit", status=503, times=1)     # optional fault injection
        DatasetDict(...).push_to_hub("fake-user/x", token=FAKE_TOKEN)
        files = fake_hub.files("fake-user/x")                 # {"README.md": b"...", "data/train-...parquet": ...}
        fake_hub.requests, fake_hub.count("commit"), fake_hub.unhandled, fake_hub.add_repo(...)

The fixture patches huggingface_hub.constants / datasets.config (endpoint, offline mode, Xet off, token file and
caches under tmp_path) and sets HF_ENDPOINT / HF_HOME / HF_HUB_DISABLE_XET for subprocesses.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import re
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote

import pytest
import yaml

FAKE_TOKEN = "hf_FakeTokenForTests0123456789abcdefXYZ"

_TYPE_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
_LFS_SUFFIXES = (".parquet", ".arrow", ".bin", ".safetensors", ".pt", ".pth", ".npy", ".gz", ".zip", ".tar", ".zst")
_LFS_MIN_SIZE = 10 * 1024 * 1024
_GITATTRIBUTES = b"".join(f"*{s} filter=lfs diff=lfs merge=lfs -text\n".encode() for s in _LFS_SUFFIXES)


def git_blob_sha1(content: bytes) -> str:
    """The git object id of a blob, as the Hub reports for regular files."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


@dataclasses.dataclass
class Commit:
    oid: str
    summary: str
    description: str
    files: dict[str, bytes]


@dataclasses.dataclass
class Repo:
    repo_id: str
    repo_type: str
    private: bool
    commits: list[Commit]
    lfs_paths: set[str] = dataclasses.field(default_factory=set)

    @property
    def head(self) -> Commit:
        return self.commits[-1]

    def find_commit(self, revision: str) -> Commit | None:
        if revision in ("main", "refs/heads/main"):
            return self.head
        if len(revision) >= 7:
            for commit in reversed(self.commits):
                if commit.oid.startswith(revision):
                    return commit
        return None


@dataclasses.dataclass
class RecordedRequest:
    method: str
    path: str
    endpoint: str
    headers: dict[str, str]
    body: bytes
    status: int = 0


@dataclasses.dataclass
class _Reply:
    status: int
    body: bytes = b""
    headers: dict[str, str] = dataclasses.field(default_factory=dict)


class HubError(Exception):
    """Raised inside a handler to answer with an error status (and the Hub's X-Error-Code header)."""

    def __init__(self, status: int, message: str, error_code: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.error_code = status, message, error_code
        self.headers = headers or {}


def _json(payload, status: int = 200, headers: dict | None = None) -> _Reply:
    return _Reply(status, json.dumps(payload).encode(), {"Content-Type": "application/json", **(headers or {})})


_REPO = r"(?P<type>models|datasets|spaces)/(?P<repo>[^/]+/[^/]+)"
_PREFIXED_REPO = r"(?:(?P<type>datasets|spaces)/)?(?P<repo>[^/]+/[^/]+?)"
_ROUTES = [
    ("GET", rf"/api/{_REPO}(?:/revision/(?P<rev>[^/]+))?", "repo_info"),
    ("POST", r"/api/repos/create", "create_repo"),
    ("POST", rf"/api/{_REPO}/preupload/(?P<rev>[^/]+)", "preupload"),
    ("POST", rf"/{_PREFIXED_REPO}\.git/info/lfs/objects/batch", "lfs_batch"),
    ("PUT", r"/_fake_lfs/(?P<oid>[0-9a-f]{64})", "lfs_upload"),
    ("POST", r"/api/validate-yaml", "validate_yaml"),
    ("POST", rf"/api/{_REPO}/commit/(?P<rev>[^/]+)", "commit"),
    ("GET", rf"/api/{_REPO}/tree/(?P<rev>[^/]+)(?:/(?P<path>.+))?", "tree"),
    ("POST", rf"/api/{_REPO}/paths-info/(?P<rev>[^/]+)", "paths_info"),
    ("GET", rf"/{_PREFIXED_REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)", "resolve"),
    ("HEAD", rf"/{_PREFIXED_REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)", "resolve"),
    ("GET", r"/api/whoami-v2", "whoami"),
    ("GET", r"/api/agent-harnesses", "agent_harnesses"),
]
_COMPILED_ROUTES = [(m, re.compile(p + r"$"), name) for m, p, name in _ROUTES]
_NO_AUTH = {"lfs_upload", "validate_yaml", "agent_harnesses"}


def _repo_type(url_type: str | None) -> str:
    return {"models": "model", "datasets": "dataset", "spaces": "space", "dataset": "dataset", "space": "space"}.get(
        url_type or "", "model"
    )


class FakeHub:
    """A threaded fake Hub on 127.0.0.1 (random free port). Use `start()`/`stop()` or the `fake_hub` fixture.

    With `token` set, every API call except LFS object uploads and YAML validation must carry
    `Authorization: Bearer <token>`, else it gets 401 like a bad token on the real Hub.
    """

    def __init__(self, token: str | None = FAKE_TOKEN, user: str = "fake-user"):
        self.token, self.user = token, user
        self.repos: dict[tuple[str, str], Repo] = {}
        self.lfs_objects: dict[str, bytes] = {}
        self.requests: list[RecordedRequest] = []
        self.unhandled: list[str] = []
        self._failures: dict[str, list[int]] = {}
        self._lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---- lifecycle -------------------------------------------------------------------------------
    def start(self) -> FakeHub:
        handler = type("Handler", (_Handler,), {"hub": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, name="fake-hub", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("FakeHub is not started")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    # ---- test helpers ----------------------------------------------------------------------------
    def fail_next(self, endpoint: str, status: int = 503, times: int = 1) -> None:
        """Answer the next `times` requests to `endpoint` (a route name, e.g. "commit") with `status`."""
        valid = sorted({name for _, _, name in _ROUTES})
        if endpoint not in valid:
            raise ValueError(f"Unknown endpoint {endpoint!r}; valid: {valid}")
        with self._lock:
            self._failures.setdefault(endpoint, []).extend([status] * times)

    def add_repo(
        self, repo_id: str, files: dict[str, bytes | str], repo_type: str = "dataset", private: bool = False
    ) -> Repo:
        """Create a repo whose first commit holds `.gitattributes` plus `files` (e.g. a user-written README)."""
        with self._lock:
            repo = self._create(repo_id, repo_type, private)
            content = {p: v.encode() if isinstance(v, str) else v for p, v in files.items()}
            self._new_commit(repo, {**repo.head.files, **content}, "Seed files", "")
            return repo

    def repo(self, repo_id: str, repo_type: str = "dataset") -> Repo:
        return self.repos[(repo_type, repo_id)]

    def files(self, repo_id: str, repo_type: str = "dataset", revision: str = "main") -> dict[str, bytes]:
        """The files of `repo_id` at `revision`: path -> bytes."""
        commit = self.repo(repo_id, repo_type).find_commit(revision)
        if commit is None:
            raise KeyError(revision)
        return dict(commit.files)

    def count(self, endpoint: str) -> int:
        """How many requests reached `endpoint` (failed ones included)."""
        return sum(r.endpoint == endpoint for r in self.requests)

    # ---- dispatch --------------------------------------------------------------------------------
    def handle(self, method: str, raw_path: str, headers: dict[str, str], body: bytes) -> _Reply:
        path, _, query = raw_path.partition("?")
        endpoint, match = self._route(method, path)
        record = RecordedRequest(method, raw_path, endpoint or "", headers, body)
        with self._lock:
            self.requests.append(record)
        try:
            if endpoint is None:
                self.unhandled.append(f"{method} {raw_path}")
                raise HubError(404, f"fake hub: no route for {method} {path}")
            self._maybe_fail(endpoint)
            self._check_auth(endpoint, headers)
            groups = {k: unquote(v) if v is not None else None for k, v in match.groupdict().items()}
            reply = getattr(self, f"_on_{endpoint}")(groups, parse_qs(query), headers, body)
        except HubError as err:
            extra = {"X-Error-Message": err.message, **err.headers}
            if err.error_code:
                extra["X-Error-Code"] = err.error_code
            reply = _json({"error": err.message}, err.status, extra)
        record.status = reply.status
        return reply

    @staticmethod
    def _route(method: str, path: str):
        for route_method, pattern, name in _COMPILED_ROUTES:
            match = pattern.match(path)
            if match and route_method == method:
                return name, match
        return None, None

    def _maybe_fail(self, endpoint: str) -> None:
        with self._lock:
            queue = self._failures.get(endpoint)
            status = queue.pop(0) if queue else None
        if status is not None:
            raise HubError(status, f"fake hub: injected failure on {endpoint}")

    def _check_auth(self, endpoint: str, headers: dict[str, str]) -> None:
        if self.token is None or endpoint in _NO_AUTH:
            return
        if headers.get("authorization") != f"Bearer {self.token}":
            raise HubError(401, "Invalid credentials in Authorization header")

    # ---- repo state ------------------------------------------------------------------------------
    def _create(self, repo_id: str, repo_type: str, private: bool) -> Repo:
        if (repo_type, repo_id) in self.repos:
            raise HubError(409, "You already created this dataset repo")
        repo = Repo(repo_id, repo_type, private, [])
        self.repos[(repo_type, repo_id)] = repo
        self._new_commit(repo, {".gitattributes": _GITATTRIBUTES}, "initial commit", "")
        return repo

    @staticmethod
    def _new_commit(repo: Repo, files: dict[str, bytes], summary: str, description: str) -> Commit:
        commit = Commit(hashlib.sha1(uuid.uuid4().bytes).hexdigest(), summary, description, files)
        repo.commits.append(commit)
        return commit

    def _get_repo(self, groups: dict) -> Repo:
        repo = self.repos.get((_repo_type(groups.get("type")), groups["repo"]))
        if repo is None:
            raise HubError(404, "Repository not found", "RepoNotFound")
        return repo

    def _get_commit(self, repo: Repo, revision: str | None) -> Commit:
        commit = repo.find_commit(revision or "main")
        if commit is None:
            raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return commit

    def _entry(self, repo: Repo, path: str, content: bytes) -> dict:
        entry = {"type": "file", "oid": git_blob_sha1(content), "size": len(content), "path": path}
        if path in repo.lfs_paths:
            entry["lfs"] = {"oid": hashlib.sha256(content).hexdigest(), "size": len(content), "pointerSize": 134}
        return entry

    @staticmethod
    def _dirs(files: dict[str, bytes]) -> set[str]:
        return {"/".join(p.split("/")[:i]) for p in files for i in range(1, p.count("/") + 1)}

    # ---- endpoints -------------------------------------------------------------------------------
    def _on_repo_info(self, groups, query, headers, body) -> _Reply:
        with self._lock:
            repo = self._get_repo(groups)
            commit = self._get_commit(repo, groups.get("rev"))
            return _json(
                {
                    "id": repo.repo_id,
                    "author": repo.repo_id.split("/")[0],
                    "sha": commit.oid,
                    "private": repo.private,
                    "disabled": False,
                    "gated": False,
                    "siblings": [{"rfilename": p} for p in sorted(commit.files)],
                }
            )

    def _on_create_repo(self, groups, query, headers, body) -> _Reply:
        payload = json.loads(body or b"{}")
        repo_type = _repo_type(payload.get("type"))
        repo_id = f"{payload.get('organization') or self.user}/{payload['name']}"
        private = payload.get("visibility") == "private" or bool(payload.get("private"))
        with self._lock:
            self._create(repo_id, repo_type, private)
        return _json({"url": f"{self.url}/{_TYPE_PREFIX[repo_type]}{repo_id}", "name": repo_id})

    def _on_preupload(self, groups, query, headers, body) -> _Reply:
        payload = json.loads(body)
        with self._lock:
            head = self._get_commit(self._get_repo(groups), groups["rev"])
            files = []
            for item in payload["files"]:
                sample = base64.b64decode(item.get("sample", ""))
                lfs = item["path"].endswith(_LFS_SUFFIXES) or item["size"] >= _LFS_MIN_SIZE or b"\0" in sample
                existing = head.files.get(item["path"])
                oid = None
                if existing is not None:
                    oid = hashlib.sha256(existing).hexdigest() if lfs else git_blob_sha1(existing)
                mode = "lfs" if lfs else "regular"
                files.append({"path": item["path"], "uploadMode": mode, "shouldIgnore": False, "oid": oid})
        return _json({"files": files, "commitOid": head.oid})

    def _on_lfs_batch(self, groups, query, headers, body) -> _Reply:
        payload = json.loads(body)
        if payload.get("operation") != "upload":
            raise HubError(400, "fake hub only supports LFS uploads")
        self._get_repo(groups)
        with self._lock:
            known = set(self.lfs_objects)
        objects = []
        for obj in payload["objects"]:
            out = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
            if obj["oid"] not in known:
                out["actions"] = {"upload": {"href": f"{self.url}/_fake_lfs/{obj['oid']}", "expires_in": 86400}}
            objects.append(out)
        return _Reply(200, json.dumps({"transfer": "basic", "objects": objects}).encode(),
                      {"Content-Type": "application/vnd.git-lfs+json"})

    def _on_lfs_upload(self, groups, query, headers, body) -> _Reply:
        if hashlib.sha256(body).hexdigest() != groups["oid"]:
            raise HubError(400, "LFS object content does not match its sha256")
        with self._lock:
            self.lfs_objects[groups["oid"]] = body
        return _Reply(200, b"", {"ETag": '"' + hashlib.md5(body).hexdigest() + '"'})

    def _on_validate_yaml(self, groups, query, headers, body) -> _Reply:
        content = json.loads(body)["content"]
        match = re.match(r"^\s*---\r?\n([\s\S]*?)\r?\n---[ \t]*(\r?\n|$)", content)
        try:
            metadata = yaml.safe_load(match.group(1)) if match else {}
        except yaml.YAMLError as err:
            return _json({"errors": [{"message": f"invalid YAML: {err}"}], "warnings": []}, 400)
        if metadata is not None and not isinstance(metadata, dict):
            return _json({"errors": [{"message": "metadata must be a mapping"}], "warnings": []}, 400)
        return _json({"errors": [], "warnings": []})

    def _on_commit(self, groups, query, headers, body) -> _Reply:
        if query.get("create_pr"):
            raise HubError(400, "fake hub does not support pull requests")
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        header = next((x["value"] for x in lines if x["key"] == "header"), {})
        with self._lock:
            repo = self._get_repo(groups)
            if groups["rev"] != "main":
                raise HubError(400, "fake hub commits only to main", "RevisionNotFound")
            parent = header.get("parentCommit")
            if parent and not repo.head.oid.startswith(parent):
                raise HubError(412, "A commit has happened since. Please refresh and try again.")
            files = dict(repo.head.files)
            for item in lines:
                self._apply(repo, files, item["key"], item["value"])
            commit = self._new_commit(repo, files, header.get("summary", ""), header.get("description", ""))
        prefix = _TYPE_PREFIX[repo.repo_type]
        return _json(
            {
                "success": True,
                "commitOid": commit.oid,
                "commitUrl": f"{self.url}/{prefix}{repo.repo_id}/commit/{commit.oid}",
                "hookOutput": "",
                "pullRequestUrl": None,
            }
        )

    def _apply(self, repo: Repo, files: dict[str, bytes], key: str, value: dict) -> None:
        if key == "file":
            files[value["path"]] = base64.b64decode(value["content"])
            repo.lfs_paths.discard(value["path"])
        elif key == "lfsFile":
            content = self.lfs_objects.get(value["oid"])
            if content is None:
                raise HubError(422, f"LFS object {value['oid']} was never uploaded")
            files[value["path"]] = content
            repo.lfs_paths.add(value["path"])
        elif key == "deletedFile":
            if files.pop(value["path"], None) is None:
                raise HubError(404, "A file with this name doesn't exist", "EntryNotFound")
        elif key == "deletedFolder":
            folder = value["path"].rstrip("/") + "/"
            for path in [p for p in files if p.startswith(folder)]:
                del files[path]
        elif key != "header":
            raise HubError(400, f"fake hub does not support commit operation {key!r}")

    def _on_tree(self, groups, query, headers, body) -> _Reply:
        recursive = query.get("recursive", ["false"])[0].lower() in ("1", "true")
        with self._lock:
            repo = self._get_repo(groups)
            commit = self._get_commit(repo, groups["rev"])
            files, dirs = commit.files, self._dirs(commit.files)
            base = (groups.get("path") or "").strip("/")
            if base and base not in dirs:
                raise HubError(404, f"{base} does not exist on main", "EntryNotFound")
            prefix = base + "/" if base else ""

            def wanted(p: str) -> bool:
                return p.startswith(prefix) and (recursive or "/" not in p[len(prefix):])

            out = [{"type": "directory", "oid": git_blob_sha1(d.encode()), "size": 0, "path": d}
                   for d in sorted(dirs) if wanted(d)]
            out += [self._entry(repo, p, c) for p, c in sorted(files.items()) if wanted(p)]
        return _json(out)

    def _on_paths_info(self, groups, query, headers, body) -> _Reply:
        form = parse_qs(body.decode())
        with self._lock:
            repo = self._get_repo(groups)
            commit = self._get_commit(repo, groups["rev"])
            dirs, out = self._dirs(commit.files), []
            for path in form.get("paths", []):
                path = path.strip("/")
                if path in commit.files:
                    out.append(self._entry(repo, path, commit.files[path]))
                elif path in dirs:
                    out.append({"type": "directory", "oid": git_blob_sha1(path.encode()), "size": 0, "path": path})
        return _json(out)

    def _on_resolve(self, groups, query, headers, body) -> _Reply:
        with self._lock:
            repo = self._get_repo(groups)
            commit = self._get_commit(repo, groups["rev"])
            content = commit.files.get(groups["path"])
            lfs = groups["path"] in repo.lfs_paths
        if content is None:
            raise HubError(404, "Entry not found", "EntryNotFound", {"X-Repo-Commit": commit.oid})
        etag = hashlib.sha256(content).hexdigest() if lfs else git_blob_sha1(content)
        reply_headers = {"X-Repo-Commit": commit.oid, "ETag": f'"{etag}"', "Accept-Ranges": "bytes"}
        if lfs:
            reply_headers.update({"X-Linked-Etag": f'"{etag}"', "X-Linked-Size": str(len(content))})
        return _ranged(content, headers.get("range"), reply_headers)

    def _on_whoami(self, groups, query, headers, body) -> _Reply:
        return _json({"type": "user", "name": self.user, "auth": {"type": "access_token"}})

    def _on_agent_harnesses(self, groups, query, headers, body) -> _Reply:
        raise HubError(404, "fake hub has no agent registry")


def _ranged(content: bytes, range_header: str | None, headers: dict[str, str]) -> _Reply:
    match = re.fullmatch(r"bytes=(\d*)-(\d*)", range_header or "")
    if not match:
        return _Reply(200, content, headers)
    start = int(match.group(1) or 0)
    end = min(int(match.group(2)) if match.group(2) else len(content) - 1, len(content) - 1)
    if start >= len(content):
        raise HubError(416, "Requested range not satisfiable", headers={"Content-Range": f"bytes */{len(content)}"})
    headers = {**headers, "Content-Range": f"bytes {start}-{end}/{len(content)}"}
    return _Reply(206, content[start : end + 1], headers)


class _Handler(BaseHTTPRequestHandler):
    hub: FakeHub
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are separate writes: avoid 40 ms delayed-ACK stalls

    def _serve(self) -> None:
        headers = {k.lower(): v for k, v in self.headers.items()}
        body = self._read_body(headers)
        reply = self.hub.handle(self.command, self.path, headers, body)
        self.send_response(reply.status)
        for key, value in reply.headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(reply.body)

    def _read_body(self, headers: dict[str, str]) -> bytes:
        if headers.get("transfer-encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(headers.get("content-length") or 0))

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _serve

    def log_message(self, format, *args):  # noqa: A002 - keep test output quiet
        pass


# ---- pytest wiring ---------------------------------------------------------------------------------


def point_clients_at(url: str, monkeypatch: pytest.MonkeyPatch, hf_home: Path) -> None:
    """Point huggingface_hub and datasets (already imported) at `url`, with a private HF home and no token.

    Both libraries copy HF_ENDPOINT into module constants at import time, so setting the variable alone is not
    enough: patch the constants they read at call time, and set the variables for any subprocess.
    """
    import datasets.config
    from huggingface_hub import constants

    hf_home.mkdir(parents=True, exist_ok=True)
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in {"HF_ENDPOINT": url, "HF_HOME": str(hf_home), "HF_HUB_DISABLE_XET": "1"}.items():
        monkeypatch.setenv(name, value)
    patches = {
        "ENDPOINT": url,
        "HUGGINGFACE_CO_URL_TEMPLATE": url + "/{repo_id}/resolve/{revision}/{filename}",
        "HF_URL_HOSTS": constants.HF_URL_HOSTS | {"127.0.0.1"},
        "HF_HUB_DISABLE_XET": True,
        "HF_HUB_OFFLINE": False,
        "HF_HUB_CACHE": str(hf_home / "hub"),
        "HF_TOKEN_PATH": str(hf_home / "token"),
        "HF_STORED_TOKENS_PATH": str(hf_home / "stored_tokens"),
        "AGENT_HARNESSES_PATH": str(hf_home / ".agent_harnesses.json"),
    }
    for name, value in patches.items():
        monkeypatch.setattr(constants, name, value)
    monkeypatch.setattr(datasets.config, "HF_ENDPOINT", url)
    monkeypatch.setattr(datasets.config, "HUB_DATASETS_URL", url + "/datasets/{repo_id}/resolve/{revision}/{path}")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)


@pytest.fixture
def fake_hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeHub]:
    """A started FakeHub (token `FAKE_TOKEN` required) with huggingface_hub and datasets pointed at it."""
    from huggingface_hub import HfFileSystem

    hub = FakeHub(token=FAKE_TOKEN).start()
    point_clients_at(hub.url, monkeypatch, tmp_path / "hf_home")
    yield hub
    hub.stop()
    HfFileSystem.clear_instance_cache()
