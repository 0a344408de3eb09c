"""Run by tests/e2e/test_truenas_clients.py with the clients' environment's Python:
log in with pytruenas (unmodified, from the registry) and print ``auth.me``'s credentials.

Usage: ``python pytruenas_login.py URL CREDENTIALS`` (an API key, or ``user:password`` with
the one-time code on a second line, pytruenas's own credential string).
"""

import json
import sys

from pytruenas import TrueNASClient

client = TrueNASClient(sys.argv[1], credentials=sys.argv[2], verify=False)
me = client.api.auth.me()
print(json.dumps({"credentials": me["credentials"], "pw_name": me["pw_name"]}))
