"""A loopback stand-in for the few Hugging Face Hub endpoints a dataset push uses.

Implements, over real HTTP on 127.0.0.1, what `huggingface_hub` calls for `create_repo`,
`list_repo_tree` and `create_commit` on the LFS path: repo creation, the recursive tree, YAML
validation, preupload (upload modes), the LFS batch API, the LFS PUT, and the ndjson commit. It
stores file contents per repo and records every request and commit, so tests can assert what a
push sent. Write endpoints require `Authorization: Bearer <token>`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlparse

import yaml

GITATTRIBUTES = b"*.parquet filter=lfs diff=lfs merge=lfs -text\n"


def git_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


@dataclass
class StoredFile:
    data: bytes
    lfs: bool


@dataclass
class Repo:
    private: bool
    files: dict[str, StoredFile] = field(default_factory=dict)
    commits: list[dict[str, Any]] = field(default_factory=list)


class FakeHub:
    """State + server. `fail_commit_after` makes the N+1-th commit fail once (an interrupted push)."""

    def __init__(self, token: str):
        self.token = token
        self.repos: dict[str, Repo] = {}
        self.lfs: dict[str, bytes] = {}
        self.requests: list[tuple[str, str]] = []
        self.fail_commit_after: int | None = None
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    def __enter__(self) -> FakeHub:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def calls(self, method: str, pattern: str) -> list[str]:
        return [path for m, path in self.requests if m == method and re.search(pattern, path)]


def _handler(hub: FakeHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:  # quiet
            pass

        # -- plumbing ------------------------------------------------------------------
        def _body(self) -> bytes:
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def _send(self, status: int, payload: Any = None, headers: dict[str, str] | None = None) -> None:
            body = b"" if payload is None else json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(body)

        def _authorised(self) -> bool:
            if self.headers.get("Authorization") == f"Bearer {hub.token}":
                return True
            self._send(401, {"error": "Invalid credentials in Authorization header"})
            return False

        def _repo(self, repo_id: str) -> Repo | None:
            repo = hub.repos.get(repo_id)
            if repo is None:
                self._send(404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
            return repo

        # -- routes --------------------------------------------------------------------
        def do_GET(self) -> None:
            path = urlparse(self.path).path
            hub.requests.append(("GET", path))
            match = re.fullmatch(r"/api/datasets/([^/]+/[^/]+)/tree/([^/]+)(/.*)?", path)
            if not match:
                return self._send(404, {"error": f"no route GET {path}"})
            repo = self._repo(match[1])
            if repo is None:
                return None
            prefix = (match[3] or "").strip("/")
            entries = []
            for name, stored in sorted(repo.files.items()):
                if prefix and not name.startswith(prefix + "/"):
                    continue
                entry: dict[str, Any] = {"type": "file", "path": name, "size": len(stored.data)}
                if stored.lfs:
                    sha = hashlib.sha256(stored.data).hexdigest()
                    pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha}\nsize {len(stored.data)}\n"
                    entry["oid"] = git_oid(pointer.encode())
                    entry["lfs"] = {"oid": sha, "size": len(stored.data), "pointerSize": len(pointer)}
                else:
                    entry["oid"] = git_oid(stored.data)
                entries.append(entry)
            return self._send(200, entries)

        def do_PUT(self) -> None:
            path = urlparse(self.path).path
            hub.requests.append(("PUT", path))
            match = re.fullmatch(r"/_lfs/([0-9a-f]{64})", path)
            data = self._body()
            if not match or hashlib.sha256(data).hexdigest() != match[1]:
                return self._send(400, {"error": "sha256 mismatch"})
            with hub.lock:
                hub.lfs[match[1]] = data
            return self._send(200, {})

        def do_POST(self) -> None:
            path = urlparse(self.path).path
            hub.requests.append(("POST", path))
            body = self._body()
            if path == "/api/repos/create":
                return self._create(json.loads(body))
            if path == "/api/validate-yaml":
                return self._validate_yaml(json.loads(body))
            if match := re.fullmatch(r"/api/datasets/([^/]+/[^/]+)/preupload/([^/]+)", path):
                return self._preupload(unquote(match[1]), json.loads(body))
            if match := re.fullmatch(r"/datasets/([^/]+/[^/]+)\.git/info/lfs/objects/batch", path):
                return self._lfs_batch(match[1], json.loads(body))
            if match := re.fullmatch(r"/api/datasets/([^/]+/[^/]+)/commit/([^/]+)", path):
                return self._commit(unquote(match[1]), body)
            return self._send(404, {"error": f"no route POST {path}"})

        def _create(self, payload: dict[str, Any]) -> None:
            if not self._authorised():
                return
            assert payload.get("type") == "dataset", payload
            repo_id = f"{payload['organization']}/{payload['name']}"
            if repo_id in hub.repos:
                return self._send(409, {"error": "You already created this dataset repo", "url": repo_id})
            repo = Repo(private=payload.get("visibility") == "private" or bool(payload.get("private")))
            repo.files[".gitattributes"] = StoredFile(GITATTRIBUTES, lfs=False)
            hub.repos[repo_id] = repo
            return self._send(200, {"url": f"{hub.url}/datasets/{repo_id}"})

        def _validate_yaml(self, payload: dict[str, Any]) -> None:
            content = payload["content"]
            match = re.match(r"^---\n(.*?)\n---\n", content, re.S)
            try:
                if not match:
                    raise ValueError("no YAML front matter")
                meta = yaml.safe_load(match[1])
                if not isinstance(meta, dict) or "configs" not in meta:
                    raise ValueError("front matter has no configs")
            except (ValueError, yaml.YAMLError) as exc:
                return self._send(400, {"errors": [{"message": str(exc)}], "warnings": []})
            return self._send(200, {"errors": [], "warnings": []})

        def _preupload(self, repo_id: str, payload: dict[str, Any]) -> None:
            if not self._authorised() or self._repo(repo_id) is None:
                return
            files = [
                {
                    "path": f["path"],
                    "uploadMode": "lfs" if f["path"].endswith(".parquet") else "regular",
                    "shouldIgnore": False,
                    "oid": None,
                }
                for f in payload["files"]
            ]
            return self._send(200, {"files": files})

        def _lfs_batch(self, repo_id: str, payload: dict[str, Any]) -> None:
            if not self._authorised() or self._repo(repo_id) is None:
                return
            assert payload["operation"] == "upload" and "basic" in payload["transfers"], payload
            objects = []
            for obj in payload["objects"]:
                entry: dict[str, Any] = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
                if obj["oid"] not in hub.lfs:
                    entry["actions"] = {"upload": {"href": f"{hub.url}/_lfs/{obj['oid']}"}}
                objects.append(entry)
            return self._send(200, {"transfer": "basic", "objects": objects})

        def _commit(self, repo_id: str, body: bytes) -> None:
            if not self._authorised():
                return
            repo = self._repo(repo_id)
            if repo is None:
                return
            with hub.lock:
                if hub.fail_commit_after is not None and len(repo.commits) >= hub.fail_commit_after:
                    hub.fail_commit_after = None
                    return self._send(500, {"error": "simulated outage"})
                lines = [json.loads(line) for line in body.splitlines() if line.strip()]
                header = next(x["value"] for x in lines if x["key"] == "header")
                added, deleted = [], []
                for item in lines:
                    value = item["value"]
                    if item["key"] == "file":
                        repo.files[value["path"]] = StoredFile(base64.b64decode(value["content"]), lfs=False)
                        added.append(value["path"])
                    elif item["key"] == "lfsFile":
                        if value["oid"] not in hub.lfs:
                            return self._send(400, {"error": f"LFS object {value['oid']} was never uploaded"})
                        repo.files[value["path"]] = StoredFile(hub.lfs[value["oid"]], lfs=True)
                        added.append(value["path"])
                    elif item["key"] == "deletedFile":
                        if value["path"] not in repo.files:
                            return self._send(404, {"error": "A file with this name doesn't exist"})
                        del repo.files[value["path"]]
                        deleted.append(value["path"])
                oid = hashlib.sha1(f"{repo_id}{len(repo.commits)}{added}{deleted}".encode()).hexdigest()
                repo.commits.append(
                    {"oid": oid, "summary": header["summary"], "added": added, "deleted": deleted}
                )
            return self._send(
                200, {"commitUrl": f"{hub.url}/datasets/{repo_id}/commit/{oid}", "commitOid": oid}
            )

    return Handler
