"""A TLS front for the boto3 check: terminates HTTPS on 127.0.0.1 with a throw-away self-signed
certificate and relays the bytes to a plain-HTTP endpoint, as the TLS load balancer an operator
puts in front of Spillway would. botocore sends Bedrock API keys (bearer tokens) only over HTTPS.
"""
import os
import socket
import ssl
import subprocess
import tempfile
import threading
from urllib.parse import urlparse


def _pump(src, dst):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class TlsFront:
    """`with TlsFront("http://127.0.0.1:8080") as f:` then use `f.url` and `verify=f.cert`."""

    def __init__(self, backend):
        u = urlparse(backend)
        self.backend = (u.hostname, u.port or 80)
        self.dir = tempfile.TemporaryDirectory()
        self.cert = os.path.join(self.dir.name, "cert.pem")
        key = os.path.join(self.dir.name, "key.pem")
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
             "-keyout", key, "-out", self.cert, "-subj", "/CN=127.0.0.1",
             "-addext", "subjectAltName=IP:127.0.0.1"],
            check=True, capture_output=True,
        )
        self.ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ctx.load_cert_chain(self.cert, key)
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"https://127.0.0.1:{self.sock.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                raw, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._relay, args=(raw,), daemon=True).start()

    def _relay(self, raw):
        try:
            front = self.ctx.wrap_socket(raw, server_side=True)
            back = socket.create_connection(self.backend)
        except OSError:
            raw.close()
            return
        threading.Thread(target=_pump, args=(back, front), daemon=True).start()
        _pump(front, back)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.sock.close()
        self.dir.cleanup()
