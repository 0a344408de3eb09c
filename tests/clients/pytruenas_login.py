"""Run by tests/e2e/test_truenas_clients.py with the clients' environment's Python:
log in with pytruenas (unmodified, from the registry) and print ``auth.me``'s credentials.

Usage: ``python pytruenas_login.py URL CREDENTIALS [CAFILE]`` (an API key, or
``user:password`` with the one-time code on a second line, pytruenas's own credential
string). Over wss:// the daemon's certificate is checked against CAFILE.
"""

import json
import sys

from pytruenas import TrueNASClient

verify = sys.argv[3] if len(sys.argv) > 3 else False
client = TrueNASClient(sys.argv[1], credentials=sys.argv[2], verify=verify)
me = client.api.auth.me()
print(json.dumps({"credentials": me["credentials"], "pw_name": me["pw_name"]}))
