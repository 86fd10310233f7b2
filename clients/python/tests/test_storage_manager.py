"""codebegen_storage.StorageManager against the real server, on loopback.

The module starts ``node --import tsx scripts/serve.ts`` (what ``npm start`` runs) from the repository's root, on
the embedded default (PGlite in a temp dir, local disk), with a known service key and JWT secret, and stops it at
the end. Faults are injected by :class:`FaultProxy`, a real HTTP proxy in front of it: nothing of the client is
mocked. Run: ``python3 -m unittest discover -s clients/python/tests -v`` (from the repository's root).
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import hashlib
import hmac
import http.client
import http.server
import io
import json
import os
import pickle
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

PACKAGE_ROOT = Path(__file__).resolve().parents[1]
REPO_ROOT = PACKAGE_ROOT.parents[1]
sys.path.insert(0, str(PACKAGE_ROOT))

from codebegen_storage import (  # noqa: E402
    BadRequest,
    Conflict,
    GenerationConflict,
    NetworkError,
    NotFound,
    ServerError,
    ServiceUnavailable,
    StorageError,
    StorageManager,
    Unauthorized,
    VersionConflict,
)

SERVICE_KEY = f"sb_secret_python_client_tests_{uuid.uuid4().hex}"
JWT_SECRET = f"python-client-tests-jwt-secret-{uuid.uuid4().hex}"
PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")

# Loopback only: no proxy from the environment in between.
_direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_get(url: str, token: Optional[str] = None) -> Tuple[int, Dict[str, str], bytes]:
    req = urllib.request.Request(url)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with _direct.open(req, timeout=30) as res:
            return res.status, {k.lower(): v for k, v in res.headers.items()}, res.read()
    except urllib.error.HTTPError as err:
        return err.code, {k.lower(): v for k, v in err.headers.items()}, err.read()


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def user_token(sub: str) -> str:
    """A Supabase-style user JWT (HS256 with the server's secret), as a signed-in user of the frontend holds."""
    now = int(time.time())
    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = b64url(json.dumps({"sub": sub, "role": "authenticated", "aud": "authenticated", "iat": now, "exp": now + 600}).encode())
    signature = hmac.new(JWT_SECRET.encode(), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{b64url(signature)}"


class Server:
    """scripts/serve.ts in its own process, on a free port and throwaway directories."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="codebegen-python-client-"))
        self.port = free_port()
        self.functions_url = f"http://127.0.0.1:{self.port}/functions/v1"
        self.log_path = self.dir / "server.log"
        self.proc: Optional[subprocess.Popen[bytes]] = None

    def start(self) -> None:
        env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": os.environ.get("HOME", str(self.dir)),
            "TMPDIR": os.environ.get("TMPDIR", tempfile.gettempdir()),
            "PORT": str(self.port),
            "HOST": "127.0.0.1",
            "PUBLIC_URL": f"http://127.0.0.1:{self.port}",
            "STORAGE_PATH": str(self.dir / "projects"),
            "CACHE_PATH": str(self.dir / "cache"),
            "PGLITE_DATA_DIR": str(self.dir / "db"),
            "SUPABASE_SERVICE_KEY": SERVICE_KEY,
            "SUPABASE_JWT_SECRET": JWT_SECRET,
            "LOG_LEVEL": "warn",
            # Set (empty) so that a developer's ./.env cannot point this run elsewhere: the embedded default.
            "DATABASE_URL": "",
            "USE_CLOUD_STORAGE": "false",
            "SUPABASE_URL": "",
            "SUPABASE_JWKS_URL": "",
            "SUPABASE_JWKS": "",
            "SUPABASE_SECRET_KEYS": "",
            "SUPABASE_SERVICE_ROLE_KEY": "",
        }
        node = os.environ.get("CODEBEGEN_NODE") or shutil.which("node")
        if not node:
            raise RuntimeError("node is not on PATH (set CODEBEGEN_NODE to a Node binary)")
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen([node, "--import", "tsx", "scripts/serve.ts"], cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited with {self.proc.returncode}:\n{self.output()}")
            try:
                if http_get(f"{self.functions_url}/generations/health")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"the server did not answer /generations/health within 120 s:\n{self.output()}")

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)


class FaultProxy:
    """A real HTTP proxy on loopback in front of the server that fails the requests it is told to.

    ``fail(*actions)`` queues an action for each of the next requests, in order (then they are forwarded):
    ``"503"`` answers 503 storage_unavailable without forwarding; ``"503-after"`` forwards the request (the server
    does the work) and answers 503 instead of its answer (a lost answer); ``"drop"`` closes the connection
    without any answer. ``requests`` records ``(method, path)`` of every request that reached the proxy.
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.actions: List[str] = []
        self.requests: List[Tuple[str, str]] = []
        self.lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def handle_any(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else None
                with proxy.lock:
                    proxy.requests.append((self.command, self.path))
                    action = proxy.actions.pop(0) if proxy.actions else "forward"
                if action == "drop":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if action == "503":
                    return self.answer(503, {"content-type": "application/json"}, json.dumps({"error": {"code": "storage_unavailable", "message": "injected by the test proxy"}}).encode())
                conn = http.client.HTTPConnection("127.0.0.1", proxy.upstream_port, timeout=60)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection", "proxy-connection", "keep-alive")}
                    conn.request(self.command, self.path, body=body, headers=headers)
                    res = conn.getresponse()
                    data = res.read()
                    if action == "503-after":
                        return self.answer(503, {"content-type": "application/json"}, json.dumps({"error": {"code": "storage_unavailable", "message": "the answer was lost (test proxy)"}}).encode())
                    self.answer(res.status, {k: v for k, v in res.getheaders() if k.lower() not in ("transfer-encoding", "connection", "keep-alive", "content-length")}, data)
                finally:
                    conn.close()

            def answer(self, status: int, headers: Dict[str, str], body: bytes) -> None:
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("content-length", str(len(body)))
                self.send_header("connection", "close")
                self.end_headers()
                self.wfile.write(body)
                self.close_connection = True

            do_GET = do_POST = do_DELETE = handle_any

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.functions_url = f"http://127.0.0.1:{self.server.server_address[1]}/functions/v1"

    def fail(self, *actions: str) -> None:
        with self.lock:
            self.actions.extend(actions)

    def count(self, method: str, contains: str = "") -> int:
        with self.lock:
            return sum(1 for m, p in self.requests if m == method and contains in p)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


SERVER: Server
_saved_proxy_env: Dict[str, str] = {}


def setUpModule() -> None:
    global SERVER
    for name in PROXY_VARS:
        if name in os.environ:
            _saved_proxy_env[name] = os.environ.pop(name)
    SERVER = Server()
    atexit.register(SERVER.stop)  # also if the run ends some other way than tearDownModule
    try:
        SERVER.start()
    except BaseException:
        SERVER.stop()
        raise


def tearDownModule() -> None:
    SERVER.stop()
    os.environ.update(_saved_proxy_env)


def sample_files(tag: str = "", n: int = 4) -> Dict[str, str]:
    files = {
        "app/main.py": f"from fastapi import FastAPI\napp = FastAPI()  # {tag}\n",
        "requirements.txt": "fastapi\nuvicorn\n",
        "README.md": f"# Generated {tag} — ünïcode ✓\n",
    }
    for i in range(3, n):
        files[f"app/routers/r{i}.py"] = f"# router {i} {tag}\n"
    return files


def new_id() -> str:
    return str(uuid.uuid4())


class StorageManagerTest(unittest.IsolatedAsyncioTestCase):
    def setUp(self) -> None:
        self.sm = StorageManager(SERVER.functions_url, SERVICE_KEY, retries=2, backoff=0.01, max_backoff=0.05)
        self.proxy = FaultProxy(SERVER.port)
        self.addCleanup(self.proxy.close)
        self.via_proxy = StorageManager(self.proxy.functions_url, SERVICE_KEY, retries=2, backoff=0.01, max_backoff=0.05)

    def url_of(self, generation_id: str) -> str:
        return f"{SERVER.functions_url}/generations/{generation_id}"

    # -------------------------------------------------------------- saving

    async def test_first_save_names_the_owner_and_later_saves_need_not(self) -> None:
        project, owner, other = new_id(), new_id(), new_id()
        with self.assertRaises(BadRequest) as refused:
            await self.sm.save_generation(project, new_id(), 1, sample_files("no owner"))
        self.assertEqual((refused.exception.code, refused.exception.status), ("invalid_request", 400))
        self.assertIn("owner_id", refused.exception.message)
        self.assertIn("first generation", refused.exception.message)

        first = await self.sm.save_generation(project, new_id(), 1, sample_files("v1"), {"prompt": "a todo API"}, owner_id=owner)
        second = await self.sm.save_generation(project, new_id(), 2, sample_files("v2"), {"prompt": "add auth"})
        third = await self.sm.save_generation(project, new_id(), None, sample_files("v3"))
        self.assertEqual([first["version"], second["version"], third["version"]], [1, 2, 3])
        # all three are the owner's, and only the owner's
        for g in (first, second, third):
            self.assertEqual(http_get(self.url_of(g["generation_id"]), user_token(owner))[0], 200)
            self.assertEqual(http_get(self.url_of(g["generation_id"]), user_token(other))[0], 404)

    async def test_the_answer_has_the_promised_shape(self) -> None:
        project, generation = new_id(), new_id()
        files = sample_files("shape", n=6)
        saved = await self.sm.save_generation(project, generation, 1, files, {"prompt": "p"}, owner_id=new_id())
        # generation_id, download_url, expires_in, storage {local_path, cloud_enabled, uploaded}: CodebeGen's design
        self.assertEqual(saved["generation_id"], generation)
        self.assertIsInstance(saved["download_url"], str)
        self.assertTrue(saved["download_url"].startswith(f"{self.url_of(generation)}/download?token="), saved["download_url"])
        self.assertEqual(saved["expires_in"], 3600)
        self.assertEqual(saved["storage"], {"local_path": f"{project}/generations/v1__{generation}", "cloud_enabled": False, "uploaded": False, "status": "local"})
        self.assertEqual(saved["project_id"], project)
        self.assertEqual(saved["file_count"], 6)
        self.assertEqual(saved["total_size_bytes"], sum(len(c.encode("utf-8")) for c in files.values()))
        self.assertRegex(saved["sha256"], r"^[0-9a-f]{64}$")
        self.assertIsInstance(saved["archive_size_bytes"], int)
        self.assertIsInstance(saved["created_at"], str)
        # on the server's disk, in CodebeGen's own layout
        source = SERVER.dir / "projects" / saved["storage"]["local_path"] / "source"
        self.assertEqual((source / "README.md").read_text(encoding="utf-8"), files["README.md"])

    async def test_takes_codebegens_arguments_as_codebegen_passes_them(self) -> None:
        project, generation, owner = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        # GenerationService.save_generation_output's call, with uuid.UUID ids from SQLAlchemy and a None in metadata
        saved = await self.sm.save_generation(
            project_id=project,
            generation_id=generation,
            version=1,
            files=sample_files("kw"),
            metadata={"prompt": "a blog API", "created_at": None},
            owner_id=owner,
        )
        self.assertEqual((saved["project_id"], saved["generation_id"]), (str(project), str(generation)))
        # positionally too; generation_id None: one is made before the first attempt
        made = await self.sm.save_generation(project, None, None, sample_files("positional"))
        self.assertEqual(made["version"], 2)
        self.assertEqual(str(uuid.UUID(made["generation_id"])), made["generation_id"])

    async def test_a_replay_answers_the_same_and_other_content_is_a_conflict(self) -> None:
        project, generation = new_id(), new_id()
        args = (project, generation, 1, sample_files("replay"), {"prompt": "same"})
        first = await self.sm.save_generation(*args, owner_id=new_id())
        again = await self.sm.save_generation(*args)
        # the signed URLs carry their own issue time; everything else is the same answer
        self.assertEqual({**again, "download_url": "", "zip_url": ""}, {**first, "download_url": "", "zip_url": ""})
        self.assertEqual(len(await self.sm.list_project_generations(project)), 1)
        with self.assertRaises(GenerationConflict) as conflict:
            await self.sm.save_generation(project, generation, 1, sample_files("other content"))
        self.assertEqual((conflict.exception.code, conflict.exception.status), ("generation_conflict", 409))

    async def test_conflicts_carry_the_code_and_are_not_retried(self) -> None:
        project, owner = new_id(), new_id()
        await self.via_proxy.save_generation(project, new_id(), 1, sample_files("a"), owner_id=owner)
        posts = self.proxy.count("POST")

        with self.assertRaises(VersionConflict) as version:
            await self.via_proxy.save_generation(project, new_id(), 1, sample_files("b"))
        self.assertIsInstance(version.exception, Conflict)
        self.assertIsInstance(version.exception, StorageError)
        self.assertEqual((version.exception.code, version.exception.status, version.exception.attempts), ("version_conflict", 409, 1))
        self.assertIn("version 1", version.exception.message)

        with self.assertRaises(GenerationConflict) as owner_conflict:
            await self.via_proxy.save_generation(project, new_id(), None, sample_files("c"), owner_id=new_id())
        self.assertEqual((owner_conflict.exception.code, owner_conflict.exception.status), ("generation_conflict", 409))
        self.assertIn("another owner", owner_conflict.exception.message)
        self.assertFalse(owner_conflict.exception.retryable)
        self.assertEqual(self.proxy.count("POST"), posts + 2, "a 409 is sent once")

        # the exception reads well and survives pickling (task queues)
        self.assertIn("version_conflict", str(version.exception))
        copy = pickle.loads(pickle.dumps(version.exception))
        self.assertIsInstance(copy, VersionConflict)
        self.assertEqual((copy.code, copy.status, copy.message), (version.exception.code, 409, version.exception.message))

    async def test_refuses_what_it_cannot_send_as_given_before_sending(self) -> None:
        with self.assertRaises(TypeError):
            await self.via_proxy.save_generation(new_id(), new_id(), 1, {"app.py": b"bytes"}, owner_id=new_id())  # type: ignore[dict-item]
        with self.assertRaises(ValueError):
            await self.via_proxy.save_generation(new_id(), new_id(), 1, sample_files(), {"score": float("nan")}, owner_id=new_id())
        self.assertEqual(self.proxy.requests, [])
        with self.assertRaises(ValueError):
            StorageManager("localhost:54321", SERVICE_KEY)

    async def test_a_bad_key_is_unauthorized_and_not_retried(self) -> None:
        bad = StorageManager(self.proxy.functions_url, "sb_secret_wrong", retries=3, backoff=0.01)
        with self.assertRaises(Unauthorized) as err:
            await bad.get_generation(new_id())
        self.assertEqual((err.exception.code, err.exception.status, err.exception.attempts), ("unauthorized", 401, 1))
        self.assertEqual(self.proxy.count("GET"), 1)

    # -------------------------------------------------------------- reading

    async def test_get_and_the_download_url_serve_the_exact_bytes(self) -> None:
        project, generation = new_id(), new_id()
        files = sample_files("download", n=5)
        saved = await self.sm.save_generation(project, generation, 1, files, {"prompt": "dl"}, owner_id=new_id())

        got = await self.sm.get_generation(generation)
        self.assertEqual({**got, "download_url": "", "zip_url": ""}, {**saved, "download_url": "", "zip_url": ""})
        url = await self.sm.get_download_url(generation)
        self.assertTrue(url.startswith(f"{self.url_of(generation)}/download?token="))

        for link in (saved["download_url"], url):
            status, headers, body = http_get(link)  # no Authorization: the signed link is enough
            self.assertEqual(status, 200)
            self.assertEqual(headers["content-type"], "application/gzip")
            self.assertEqual(headers["content-disposition"], f'attachment; filename="v1__{generation}.tar.gz"')
            self.assertEqual(hashlib.sha256(body).hexdigest(), saved["sha256"])
            self.assertEqual(headers["x-checksum-sha256"], saved["sha256"])
            self.assertEqual(len(body), saved["archive_size_bytes"])

        archive = await self.sm.download_archive(generation)
        self.assertEqual(hashlib.sha256(archive).hexdigest(), saved["sha256"])
        root = f"v1__{generation}"
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
            names = tar.getnames()
            self.assertIn(f"{root}/manifest.json", names)
            for path, content in files.items():
                member = tar.extractfile(f"{root}/source/{path}")
                assert member is not None
                self.assertEqual(member.read().decode("utf-8"), content)
            manifest = json.loads(tar.extractfile(f"{root}/manifest.json").read())  # type: ignore[union-attr]
        self.assertEqual(manifest["metadata"], {"prompt": "dl"})

    async def test_lists_every_page_newest_first(self) -> None:
        project = new_id()
        ids = []
        for i in range(7):
            saved = await self.sm.save_generation(project, new_id(), None, sample_files(f"page {i}"), owner_id=new_id() if i == 0 else None)
            ids.append(saved["generation_id"])
        listed = await self.via_proxy.list_project_generations(project, page_size=3)
        self.assertEqual([g["version"] for g in listed], [7, 6, 5, 4, 3, 2, 1])
        self.assertEqual([g["generation_id"] for g in listed], list(reversed(ids)))
        self.assertEqual(self.proxy.count("GET", f"project_id={project}"), 3, "three pages of 3, 3 and 1")
        self.assertNotIn("download_url", listed[0])
        self.assertEqual(set(listed[0]["storage"]), {"local_path", "cloud_enabled", "uploaded", "status"})

        seen = [g["version"] async for g in self.sm.iter_project_generations(project, page_size=100)]
        self.assertEqual(seen, [7, 6, 5, 4, 3, 2, 1])
        with self.assertRaises(NotFound) as missing:
            await self.sm.list_project_generations(new_id())
        self.assertEqual(missing.exception.code, "project_not_found")

    async def test_delete_then_not_found(self) -> None:
        project, generation = new_id(), new_id()
        saved = await self.sm.save_generation(project, generation, 1, sample_files("delete"), owner_id=new_id())
        await self.sm.delete_generation(generation)  # None: deleted
        with self.assertRaises(NotFound) as gone:
            await self.sm.get_generation(generation)
        self.assertEqual((gone.exception.code, gone.exception.status), ("generation_not_found", 404))
        with self.assertRaises(NotFound):
            await self.sm.delete_generation(generation)
        self.assertEqual(http_get(saved["download_url"])[0], 404)
        self.assertFalse((SERVER.dir / "projects" / saved["storage"]["local_path"]).exists())

    async def test_health(self) -> None:
        report = await self.sm.health()
        self.assertEqual(report["status"], "ok")

    # -------------------------------------------------------------- retries

    async def test_retries_a_503_and_then_saves(self) -> None:
        self.proxy.fail("503")
        saved = await self.via_proxy.save_generation(new_id(), new_id(), 1, sample_files("retry"), owner_id=new_id())
        self.assertEqual(saved["version"], 1)
        self.assertEqual(self.proxy.count("POST"), 2)

    async def test_a_retry_after_a_lost_answer_is_a_replay(self) -> None:
        project, generation = new_id(), new_id()
        self.proxy.fail("503-after")  # the server saves; its answer is lost
        saved = await self.via_proxy.save_generation(project, generation, None, sample_files("lost answer"), owner_id=new_id())
        self.assertEqual((saved["generation_id"], saved["version"]), (generation, 1))
        self.assertEqual(self.proxy.count("POST"), 2)
        listed = await self.sm.list_project_generations(project)
        self.assertEqual([g["generation_id"] for g in listed], [generation], "saved once, not twice")

    async def test_a_retried_delete_whose_first_attempt_deleted_counts_as_deleted(self) -> None:
        generation = new_id()
        await self.sm.save_generation(new_id(), generation, 1, sample_files("delete retry"), owner_id=new_id())
        self.proxy.fail("503-after")
        await self.via_proxy.delete_generation(generation)
        self.assertEqual(self.proxy.count("DELETE"), 2)
        with self.assertRaises(NotFound):
            await self.sm.get_generation(generation)

    async def test_retries_reads_after_a_dropped_connection(self) -> None:
        saved = await self.sm.save_generation(new_id(), new_id(), 1, sample_files("drop"), owner_id=new_id())
        self.proxy.fail("drop", "503")
        got = await self.via_proxy.get_generation(saved["generation_id"])
        self.assertEqual(got["sha256"], saved["sha256"])
        self.assertEqual(self.proxy.count("GET"), 3)

    async def test_a_5xx_that_persists_is_raised_after_the_retries(self) -> None:
        self.proxy.fail(*["503"] * 10)
        with self.assertRaises(ServiceUnavailable) as err:
            await self.via_proxy.save_generation(new_id(), new_id(), 1, sample_files("down"), owner_id=new_id())
        self.assertIsInstance(err.exception, ServerError)
        self.assertEqual((err.exception.code, err.exception.status, err.exception.attempts), ("storage_unavailable", 503, 3))
        self.assertTrue(err.exception.retryable)
        self.assertEqual(self.proxy.count("POST"), 3, "1 attempt + 2 retries")

    async def test_a_network_error_is_raised_after_the_retries(self) -> None:
        # connections dropped without an answer
        self.proxy.fail(*["drop"] * 10)
        with self.assertRaises(NetworkError) as dropped:
            await self.via_proxy.get_generation(new_id())
        self.assertEqual((dropped.exception.code, dropped.exception.status, dropped.exception.attempts), ("network_error", None, 3))
        self.assertEqual(self.proxy.count("GET"), 3)
        # nothing listening at all
        closed = StorageManager(f"http://127.0.0.1:{free_port()}/functions/v1", SERVICE_KEY, retries=2, backoff=0.01, timeout=5)
        started = time.monotonic()
        with self.assertRaises(NetworkError) as refused:
            await closed.save_generation(new_id(), new_id(), 1, sample_files(), owner_id=new_id())
        self.assertEqual(refused.exception.attempts, 3)
        self.assertIn("Connection", refused.exception.message)
        self.assertIsInstance(refused.exception.__cause__, OSError)
        self.assertLess(time.monotonic() - started, 10)

    async def test_concurrent_saves_do_not_block_each_other(self) -> None:
        project, owner = new_id(), new_id()
        await self.sm.save_generation(project, new_id(), 1, sample_files("base"), owner_id=owner)
        saved = await asyncio.gather(*(self.sm.save_generation(project, new_id(), None, sample_files(f"c{i}")) for i in range(5)))
        self.assertEqual(sorted(g["version"] for g in saved), [2, 3, 4, 5, 6])


if __name__ == "__main__":
    unittest.main(verbosity=2)
