#!/usr/bin/env python3
"""A real SMTP server (aiosmtpd) for the platform's TLS tests.

    smtp-tls-server.py --mode starttls|implicit|plain --cert C --key K --out FILE

- starttls: plain connection, STARTTLS offered (RFC 3207) but not required: whether the
            envelope is sent encrypted is the client's choice, which the tests check.
- implicit: TLS from the first byte (SMTPS, RFC 8314).
- plain:    no TLS at all, STARTTLS not offered.

Listens on 127.0.0.1 on a free port and prints `{"port": N}` on one line once it accepts
connections. Everything a client does that matters is written to FILE (JSON, replaced whole on
each change): the EHLO/HELO names, each MAIL FROM attempted (with whether the session was
encrypted), and each message received (envelope, data, encrypted or not). Stops on SIGTERM.
"""

import argparse
import asyncio
import json
import os
import signal
import ssl
import sys

from aiosmtpd.smtp import SMTP


def encrypted(server):
    """Whether the session runs over TLS (upgraded by STARTTLS, or from the start)."""
    return server.transport.get_extra_info("ssl_object") is not None


class Recorder:
    def __init__(self, out):
        self.out = out
        self.state = {"hello": [], "mail_from": [], "messages": []}
        self.save()

    def save(self):
        tmp = self.out + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(self.state, f)
        os.replace(tmp, self.out)

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        self.state["hello"].append({"name": hostname, "tls": encrypted(server)})
        self.save()
        session.host_name = hostname
        return responses

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        self.state["mail_from"].append({"address": address, "tls": encrypted(server)})
        self.save()
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.state["messages"].append(
            {
                "mail_from": envelope.mail_from,
                "rcpt_tos": list(envelope.rcpt_tos),
                "data": envelope.content.decode("utf-8", "replace"),
                "tls": encrypted(server),
            }
        )
        self.save()
        return "250 Message accepted for delivery"


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", choices=["starttls", "implicit", "plain"], required=True)
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    context = None
    if args.mode != "plain":
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(args.cert, args.key)

    recorder = Recorder(args.out)

    def factory():
        if args.mode == "starttls":
            return SMTP(recorder, tls_context=context, require_starttls=False,
                        hostname="tls-test-smtp")
        return SMTP(recorder, hostname="tls-test-smtp")

    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        factory,
        host="127.0.0.1",
        port=0,
        ssl=context if args.mode == "implicit" else None,
    )
    port = server.sockets[0].getsockname()[1]
    print(json.dumps({"port": port}), flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
