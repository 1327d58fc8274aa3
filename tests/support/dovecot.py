"""A private Dovecot IMAP server for tests: its own config directory, 127.0.0.1 on a free
port, IMAPS with a self-signed certificate made here, one passwd-file user.

    with Dovecot() as server:  server.url (imaps://...), server.ca_file, server.client()

Debian's `dovecot-imapd` package provides the binaries; nothing system-wide is started
or changed. Run as root it switches to the `dovecot` user for mail (Dovecot refuses uid
0); otherwise everything runs as the current user.

`python -m tests.support.dovecot` starts one and prints its URL until Ctrl-C (handy with
`MAILPREFS_BOUNCE_IMAP_URL` for trying `fetch-bounces` by hand: `make dovecot`).
"""

from __future__ import annotations

import imaplib
import os
import pwd
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from pathlib import Path

from tests.support.ports import free_port

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
USER, PASSWORD = "bounces", "bounce-box-password"

CONFIG = """\
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
instance_name = mailprefs-test-{port}
protocols = imap
listen = 127.0.0.1
ssl = required
ssl_cert = <{root}/cert.pem
ssl_key = <{root}/key.pem
auth_mechanisms = plain
first_valid_uid = 1
mail_location = maildir:{root}/home/%u/Maildir
{users}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {root}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={root}/home/%u
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    port = 0
  }}
  inet_listener imaps {{
    port = {port}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
}}
"""


def available() -> bool:
    return Path(DOVECOT).exists() and shutil.which("openssl") is not None


class Dovecot:
    def __init__(self) -> None:
        # Short and world-traversable: socket paths are limited to ~108 characters, and
        # the mail user may not be us.
        self.root = Path(tempfile.mkdtemp(prefix="mp-dovecot-"))
        self.root.chmod(0o755)
        self.port = free_port()
        self.ca_file = str(self.root / "cert.pem")
        self.url = f"imaps://{USER}:{PASSWORD}@127.0.0.1:{self.port}/INBOX"

    def __enter__(self) -> Dovecot:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout: float = 20.0) -> None:
        root = self.root
        for name in ("run", "state", "home"):
            (root / name).mkdir()
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-keyout", str(root / "key.pem"), "-out", self.ca_file,
             "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
            check=True, capture_output=True,
        )  # fmt: skip
        (root / "passwd").write_text(f"{USER}:{{PLAIN}}{PASSWORD}\n")
        if os.getuid() == 0:
            mail_user = pwd.getpwnam("dovecot")
            uid, gid, users = mail_user.pw_uid, mail_user.pw_gid, ""
            os.chown(root / "home", uid, gid)
        else:
            me = pwd.getpwuid(os.getuid()).pw_name
            uid, gid = os.getuid(), os.getgid()
            users = (
                f"default_internal_user = {me}\ndefault_login_user = {me}\n"
                f"default_internal_group = {pwd.getpwuid(uid).pw_gid}\n"
            )
        (root / "dovecot.conf").write_text(
            CONFIG.format(root=root, port=self.port, uid=uid, gid=gid, users=users)
        )
        subprocess.run([DOVECOT, "-c", str(root / "dovecot.conf")], check=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("dovecot did not start:\n" + self.log())

    def stop(self) -> None:
        pid_file = self.root / "run" / "master.pid"
        if pid_file.exists():
            pid = int(pid_file.read_text().strip())
            subprocess.run(
                ["doveadm", "-c", str(self.root / "dovecot.conf"), "stop"], capture_output=True
            )
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and _alive(pid):
                time.sleep(0.1)
        shutil.rmtree(self.root, ignore_errors=True)

    def log(self) -> str:
        path = self.root / "dovecot.log"
        return path.read_text() if path.exists() else ""

    def client(self) -> imaplib.IMAP4_SSL:
        context = ssl.create_default_context(cafile=self.ca_file)
        client = imaplib.IMAP4_SSL("127.0.0.1", self.port, ssl_context=context, timeout=30)
        client.login(USER, PASSWORD)
        return client

    def deliver(self, raw: bytes, folder: str = "INBOX") -> None:
        """Put a message in a folder, as the MTA does."""
        client = self.client()
        try:
            client.append(folder, None, None, raw)
        finally:
            client.logout()

    def folder(self, name: str = "INBOX") -> list[bytes]:
        """The messages of a folder (not marked deleted)."""
        client = self.client()
        try:
            status, _ = client.select(f'"{name}"', readonly=True)
            if status != "OK":
                return []
            _, data = client.uid("SEARCH", None, "UNDELETED")
            out = []
            for uid in (data[0] or b"").split():
                _, parts = client.uid("FETCH", uid, "(BODY.PEEK[])")
                out += [p[1] for p in parts if isinstance(p, tuple)]
            return out
        finally:
            client.logout()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


if __name__ == "__main__":
    with Dovecot() as server:
        print(f"MAILPREFS_BOUNCE_IMAP_URL={server.url}")
        print(f"MAILPREFS_BOUNCE_IMAP_CA_FILE={server.ca_file}", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
