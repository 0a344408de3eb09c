"""``midclt2fa``: the command-line client, and the client library tests share with it."""
