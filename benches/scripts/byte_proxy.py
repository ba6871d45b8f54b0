#!/usr/bin/env python3
"""A TCP proxy that counts bytes each way, for measuring what a client downloads from a
registry. Usage: byte_proxy.py LISTEN_PORT TARGET_HOST:PORT COUNT_FILE

COUNT_FILE holds "<bytes to clients> <bytes from clients>", rewritten (atomically) at most
every 100 ms while traffic flows and whenever a connection closes."""

import asyncio
import os
import sys
import time

listen_port = int(sys.argv[1])
target_host, target_port = sys.argv[2].rsplit(":", 1)
count_file = sys.argv[3]
totals = [0, 0]
written = [0.0]


def save(force=False):
    now = time.monotonic()
    if not force and now - written[0] < 0.1:
        return
    written[0] = now
    tmp = count_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(f"{totals[0]} {totals[1]}\n")
    os.replace(tmp, count_file)


async def pipe(reader, writer, slot):
    try:
        while True:
            data = await reader.read(1 << 16)
            if not data:
                break
            totals[slot] += len(data)
            save()
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        try:
            writer.close()
        except Exception:
            pass


async def handle(client_reader, client_writer):
    try:
        server_reader, server_writer = await asyncio.open_connection(target_host, int(target_port))
    except OSError:
        client_writer.close()
        return
    await asyncio.gather(
        pipe(server_reader, client_writer, 0),
        pipe(client_reader, server_writer, 1),
    )
    save(force=True)


async def main():
    save(force=True)
    server = await asyncio.start_server(handle, "127.0.0.1", listen_port)
    async with server:
        await server.serve_forever()


asyncio.run(main())
