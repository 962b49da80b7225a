"""A real SMTP server for smtp-send's tests: aiosmtpd (Debian's
python3-aiosmtpd) on 127.0.0.1, port chosen by the kernel and printed on
stdout. Each message is written to DIR as NNNNNN.json (envelope) and
NNNNNN.eml (the data exactly as received, after dot-unstuffing).
Recipients whose local part starts with "refuse" get 550 5.1.1.

Usage: /usr/bin/python3 aiosmtpd_sink.py DIR
"""
import asyncio
import itertools
import json
import os
import sys

from aiosmtpd.smtp import SMTP


class Handler:
    def __init__(self, out):
        self.out = out
        self.seq = itertools.count(1)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.startswith("refuse"):
            return "550 5.1.1 refused by the test server"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        base = os.path.join(self.out, "%06d" % next(self.seq))
        with open(base + ".eml.tmp", "wb") as f:
            f.write(envelope.original_content)
        with open(base + ".json.tmp", "w") as f:
            json.dump({"from": envelope.mail_from, "to": envelope.rcpt_tos,
                       "mail_options": envelope.mail_options}, f)
        os.rename(base + ".eml.tmp", base + ".eml")
        os.rename(base + ".json.tmp", base + ".json")
        return "250 2.0.0 OK stored"


async def main():
    loop = asyncio.get_running_loop()
    handler = Handler(sys.argv[1])
    server = await loop.create_server(
        lambda: SMTP(handler, decode_data=False, enable_SMTPUTF8=True,
                     hostname="aiosmtpd.test", data_size_limit=64 << 20),
        "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()


asyncio.run(main())
