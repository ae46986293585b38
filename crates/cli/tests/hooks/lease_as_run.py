#!/usr/bin/env python3
"""Asks Warrant for a lease as the run of the `warrant exec` (or `warrant
run`) this runs under, the way any helper of an agent would: a proof from
the per-run socket (`WARRANT_RUN_SOCKET`), then `POST /v1/leases`.

Usage: lease_as_run.py ENGINE ROLE SECRET

Prints one JSON line, `{"status", "code", "detail", "lease"}`: never the
secret itself. Standard library only.
"""

import http.client
import json
import os
import socket
import sys
import urllib.error
import urllib.request


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("warrant-run", timeout=20)
        self.unix_path = path

    def connect(self):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(20)
        sock.connect(self.unix_path)
        self.sock = sock


def run_socket(method, path, body=None):
    conn = UnixConnection(os.environ["WARRANT_RUN_SOCKET"])
    conn.request(
        method,
        path,
        body=None if body is None else json.dumps(body),
        headers={"content-type": "application/json"},
    )
    response = conn.getresponse()
    answer = json.loads(response.read() or b"null")
    conn.close()
    if response.status != 200:
        sys.exit(f"the run socket refused: {answer}")
    return answer


def main():
    engine, role, secret = sys.argv[1:4]
    run = run_socket("GET", "/v1/run")
    url = run["warrant"] + "/v1/leases"
    proof = run_socket("POST", "/v1/proof", {"htm": "POST", "htu": url})
    request = urllib.request.Request(
        url,
        method="POST",
        data=json.dumps(
            {"engine": engine, "role": role, "params": {"secret": secret}}
        ).encode(),
        headers={
            "content-type": "application/json",
            "authorization": proof["authorization"],
            "dpop": proof["dpop"],
        },
    )
    # Straight to Warrant on loopback, whatever proxy the environment names.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=20) as response:
            status, answer = response.status, json.load(response)
    except urllib.error.HTTPError as e:
        status, answer = e.code, json.loads(e.read() or b"null")
    print(
        json.dumps(
            {
                "status": status,
                "code": answer.get("code"),
                "detail": answer.get("detail"),
                "lease": answer.get("id"),
            }
        )
    )


main()
