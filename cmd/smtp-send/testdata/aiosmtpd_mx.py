"""A real MX host for smtp-send's MX delivery tests: aiosmtpd (Debian's
python3-aiosmtpd) listening on HOST:PORT (127.0.0.2 to 127.0.0.254, one
port shared by every MX host of a test, as SMTP_SEND_MX_PORT dials).
It prints "ready" on stdout once it listens. Each message it takes is
written to DIR as NNNNNN.json (envelope, the address it listened on, and
whether the session was under TLS) and NNNNNN.eml (the data exactly as
received, after dot-unstuffing).

Options:
  --greeting "554 5.3.2 no service"  greet with this reply and hang up
  --mail-reply "451 4.3.2 busy"      answer MAIL FROM with this reply
  --tls CERT KEY                     offer STARTTLS with this certificate

Usage: /usr/bin/python3 aiosmtpd_mx.py DIR HOST PORT [options]
"""
import argparse
import asyncio
import itertools
import json
import os
import ssl

from aiosmtpd.smtp import SMTP


class Handler:
    def __init__(self, args):
        self.args = args
        self.seq = itertools.count(1)

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if self.args.mail_reply:
            return self.args.mail_reply
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 OK"

    async def handle_DATA(self, server, session, envelope):
        base = os.path.join(self.args.dir, "%s-%06d" % (self.args.host, next(self.seq)))
        with open(base + ".eml.tmp", "wb") as f:
            f.write(envelope.original_content)
        with open(base + ".json.tmp", "w") as f:
            json.dump({"from": envelope.mail_from, "to": envelope.rcpt_tos,
                       "host": self.args.host, "tls": session.ssl is not None,
                       "helo": session.host_name}, f)
        os.rename(base + ".eml.tmp", base + ".eml")
        os.rename(base + ".json.tmp", base + ".json")
        return "250 2.0.0 OK stored"


class MX(SMTP):
    greeting = None

    async def _handle_client(self):
        if self.greeting:
            await self.push(self.greeting)
            self.transport.close()
            return
        await super()._handle_client()


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("dir")
    p.add_argument("host")
    p.add_argument("port", type=int)
    p.add_argument("--greeting")
    p.add_argument("--mail-reply")
    p.add_argument("--tls", nargs=2)
    args = p.parse_args()
    ctx = None
    if args.tls:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(args.tls[0], args.tls[1])
    handler = Handler(args)

    def factory():
        s = MX(handler, decode_data=False, enable_SMTPUTF8=True, hostname=args.host,
               tls_context=ctx, require_starttls=False, data_size_limit=64 << 20)
        s.greeting = args.greeting
        return s

    loop = asyncio.get_running_loop()
    server = await loop.create_server(factory, args.host, args.port)
    print("ready", flush=True)
    await server.serve_forever()


asyncio.run(main())
