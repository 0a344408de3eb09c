"""Run by tests/e2e/test_truenas_clients.py with the clients' environment's Python: log in
with aiotruenas (unmodified, from the registry; it logs in with an API key only) and print
``auth.me``'s credentials.

Usage: ``python aiotruenas_login.py URL KEY``, URL being ``ws://HOST:PORT/api/current`` or
``wss://...``. Over wss the certificate is checked against the system store, which the test
replaces with the daemon's certificate through ``SSL_CERT_FILE``.
"""

import asyncio
import json
import sys
from urllib.parse import urlsplit

from aiotruenas import TrueNASClient


async def main(url: str, key: str) -> None:
    parts = urlsplit(url)
    async with TrueNASClient(
        parts.hostname or "",
        key,
        use_tls=parts.scheme == "wss",
        verify_ssl=True,
        port=parts.port,
    ) as client:
        me = await client.call("auth.me")
    print(json.dumps({"credentials": me["credentials"], "pw_name": me["pw_name"]}))


asyncio.run(main(sys.argv[1], sys.argv[2]))
