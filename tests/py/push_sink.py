#!/usr/bin/env python3
"""A push endpoint standing in for a UnifiedPush distributor or a browser's push service,
for tests/it/push_encryption.rs. It reads every POST as the subscribed device would, with
an implementation of RFC 8291 written elsewhere (the `http_ece` package): it decrypts the
body with the subscription's private key and auth secret, checks the VAPID header
(RFC 8292: the ES256 signature by `k`, `aud` this endpoint's origin, `exp` within 24 hours,
`sub`), answers 201, and prints one line per request:

    READY <port>
    PUSH {"path", "ok", "problems": [...], "plaintext", "body_b64", "headers": {...}}

Usage: push_sink.py --private-key B64U --auth B64U --vapid-key B64U --sub SUB
                    [--port N] [--tls]   (--tls: https with a fresh self-signed certificate)
"""

import argparse
import base64
import datetime
import http.server
import ipaddress
import json
import os
import ssl
import sys
import tempfile
import threading
import time

import http_ece
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, utils
from cryptography.x509.oid import NameOID


def b64u_decode(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def check_vapid(header, expected_key, origin, sub):
    """The problems with an `Authorization: vapid t=JWT, k=KEY` header (empty if none)."""
    if not header or not header.startswith("vapid "):
        return ["no vapid Authorization header"]
    params = dict(
        part.strip().split("=", 1) for part in header[len("vapid "):].split(",") if "=" in part
    )
    problems = []
    if params.get("k") != expected_key:
        problems.append("k is not the box's VAPID key")
    token = params.get("t", "")
    try:
        head_b64, claims_b64, sig_b64 = token.split(".")
        head = json.loads(b64u_decode(head_b64))
        claims = json.loads(b64u_decode(claims_b64))
        signature = b64u_decode(sig_b64)
    except ValueError as e:
        return problems + [f"the token is not a JWT: {e}"]
    if head.get("alg") != "ES256":
        problems.append(f"alg is {head.get('alg')}")
    try:
        key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b64u_decode(params.get("k", "")))
        if len(signature) != 64:
            raise InvalidSignature()
        der = utils.encode_dss_signature(
            int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
        )
        key.verify(der, f"{head_b64}.{claims_b64}".encode(), ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        problems.append("the token's signature does not verify with k")
    if claims.get("aud") != origin:
        problems.append(f"aud is {claims.get('aud')!r}, not {origin!r}")
    now = time.time()
    exp = claims.get("exp")
    if not isinstance(exp, int) or not now < exp <= now + 24 * 3600:
        problems.append(f"exp {exp!r} is not within the next 24 hours")
    if claims.get("sub") != sub:
        problems.append(f"sub is {claims.get('sub')!r}, not {sub!r}")
    return problems


def self_signed(directory):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path = os.path.join(directory, "cert.pem")
    key_path = os.path.join(directory, "key.pem")
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return cert_path, key_path


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--private-key", required=True)
    parser.add_argument("--auth", required=True)
    parser.add_argument("--vapid-key", required=True)
    parser.add_argument("--sub", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--tls", action="store_true")
    args = parser.parse_args()

    private_key = ec.derive_private_key(
        int.from_bytes(b64u_decode(args.private_key), "big"), ec.SECP256R1()
    )
    auth = b64u_decode(args.auth)
    scheme = "https" if args.tls else "http"

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_):
            pass

        def do_POST(self):
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            origin = f"{scheme}://127.0.0.1:{self.server.server_address[1]}"
            problems = check_vapid(self.headers.get("Authorization"), args.vapid_key, origin, args.sub)
            if self.headers.get("Content-Encoding") != "aes128gcm":
                problems.append(f"Content-Encoding is {self.headers.get('Content-Encoding')!r}")
            if not self.headers.get("TTL", "").isdigit():
                problems.append("no TTL header")
            plaintext = None
            try:
                plaintext = http_ece.decrypt(
                    body, private_key=private_key, auth_secret=auth, version="aes128gcm"
                ).decode()
            except Exception as e:  # any failure to decrypt is the finding
                problems.append(f"does not decrypt: {e!r}")
            report = {
                "path": self.path,
                "ok": not problems,
                "problems": problems,
                "plaintext": plaintext,
                "body_b64": base64.b64encode(body).decode(),
                "headers": {k.lower(): v for k, v in self.headers.items()},
            }
            # Answered before reported, so a test that stops the sink on the report does
            # not cut the answer off.
            self.send_response(201)
            self.send_header("Content-Length", "0")
            # One request per connection: a certificate changed with NEWCERT is the one
            # the next push meets.
            self.send_header("Connection", "close")
            self.close_connection = True
            self.end_headers()
            self.wfile.flush()
            print("PUSH " + json.dumps(report), flush=True)

    class Server(http.server.ThreadingHTTPServer):
        # The TLS context of each new connection (None: plain HTTP); NEWCERT on standard
        # input replaces it, so the endpoint presents a new certificate at the same port.
        context = None

        def get_request(self):
            sock, address = self.socket.accept()
            if self.context is not None:
                sock = self.context.wrap_socket(sock, server_side=True)
            return sock, address

    def new_context():
        cert_path, key_path = self_signed(tempfile.mkdtemp())
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_path, key_path)
        return context

    server = Server(("127.0.0.1", args.port), Handler)
    if args.tls:
        server.context = new_context()

    def commands():
        for line in sys.stdin:
            if line.strip() == "NEWCERT" and args.tls:
                server.context = new_context()
                print("RENEWED", flush=True)

    threading.Thread(target=commands, daemon=True).start()
    print(f"READY {server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
