"""A throw-away PostgreSQL 16.2 + pgvector 0.6.2 on a loopback port, from the `pgserver` wheel's binaries
(the test extra's pgserver==0.1.4): the real server the storage tests and `zhiku bench kb` start. zhiku itself
never uses it; a deployment points `database_url` at its own PostgreSQL.

PostgreSQL refuses to run as root, so as root (CI) its binaries run as the unprivileged user `postgres`.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path


def _run(*cmd: str) -> None:
    full = ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else list(cmd)
    subprocess.run(full, check=True, capture_output=True, timeout=300)


class LocalPostgres:
    """A new cluster in its own folder under /tmp; `url` names the server (no database). With a password,
    TCP connections need it (scram), so that a wrong one is refused as on a real server; without, trust."""

    def __init__(self, password: str | None = None, options: str = "", prefix: str = "zhiku-pg-") -> None:
        spec = importlib.util.find_spec("pgserver")  # not imported: only its binaries are used
        if spec is None or not spec.submodule_search_locations:
            raise RuntimeError("a local PostgreSQL needs the binaries of `pip install pgserver==0.1.4`")
        package = Path(list(spec.submodule_search_locations)[0])
        # Under /tmp itself, not a caller's 0700 folder: the postgres user must reach the binaries and data.
        self.root = Path(tempfile.mkdtemp(prefix=prefix))
        self.root.chmod(0o755)
        # A copy (the postgres user may not be able to read the virtualenv), laid out as in site-packages:
        # the binaries find their bundled libraries at $ORIGIN/../../../pgserver.libs.
        bins = self.root / "pkg" / "pgserver" / "pginstall" / "bin"
        shutil.copytree(package / "pginstall", bins.parent, symlinks=True)
        if (package.parent / "pgserver.libs").is_dir():
            shutil.copytree(package.parent / "pgserver.libs", self.root / "pkg" / "pgserver.libs", symlinks=True)
        data = self.root / "data"
        data.mkdir(mode=0o700)
        if os.geteuid() == 0:
            shutil.chown(data, "postgres")
        auth = ["--auth=trust"]
        if password is not None:
            pwfile = self.root / "pw"
            pwfile.write_text(password)
            pwfile.chmod(0o644)
            auth = ["--auth-local=trust", "--auth-host=scram-sha-256", f"--pwfile={pwfile}"]
        _run(str(bins / "initdb"), "-D", str(data), "-U", "postgres", *auth, "-E", "UTF8", "--locale=C.UTF-8")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        self._ctl = [str(bins / "pg_ctl"), "-D", str(data)]
        self._start = [*self._ctl, "-o", f"-p {port} -k {data} -c listen_addresses=127.0.0.1 {options}",
                       "-l", str(data / "log"), "-w", "start"]
        self.url = f"postgresql://postgres{'' if password is None else ':' + password}@127.0.0.1:{port}"

    def start(self) -> None:
        _run(*self._start)

    def stop(self, mode: str = "fast") -> None:
        """Stop the server ("immediate" is a crash, as a power cut would leave it)."""
        _run(*self._ctl, "-m", mode, "-w", "stop")

    def remove(self) -> None:
        """Stop it if it runs, close zhiku's pools to it, and delete its folder."""
        from zhiku import db

        db.close_pools()
        try:
            self.stop("immediate")
        except subprocess.CalledProcessError:
            pass  # not running
        shutil.rmtree(self.root, ignore_errors=True)
