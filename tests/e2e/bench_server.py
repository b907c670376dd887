"""A small HTTP/1.1 keep-alive test server for the `hscale bench` end-to-end tests.

    python3 bench_server.py PORT [--stall-at S --stall-for S] [--close-every N]

Every request is answered at once, except that requests arriving inside the
stall window [stall_at, stall_at + stall_for) (seconds after the first request)
are held until the window ends: the whole server freezes for a while, as a
GC pause or a failover would. With --close-every N, the Nth request on each
connection is read and the connection closed unanswered, with no
Connection: close before it: a kept-alive connection's idle timeout racing
the client's next request, made certain. Paths:
    /status/NNN   answers with status NNN
    /chunked      a chunked body in three chunks
    anything else 200 with a small JSON body
"""
import argparse
import asyncio
import time

BODY = b'{"status":"ok"}\n'


class State:
    first = None


async def handle(reader, writer, args, st):
    served = 0
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            served += 1
            if args.close_every and served == args.close_every:
                break
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            length = 0
            for line in lines[1:]:
                if line.lower().startswith("content-length:"):
                    length = int(line.split(":", 1)[1])
            if length:
                await reader.readexactly(length)
            now = time.monotonic()
            if st.first is None:
                st.first = now
            if args.stall_for > 0:
                start = st.first + args.stall_at
                end = start + args.stall_for
                if start <= now < end:
                    await asyncio.sleep(end - now)
            status, body, chunked = 200, BODY, False
            if target.startswith("/status/"):
                status = int(target[len("/status/"):len("/status/") + 3])
            elif target.startswith("/chunked"):
                chunked = True
            if chunked:
                parts = [b"{\"a\":", b"\"chunked\"", b"}\n"]
                out = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                out += b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"
            else:
                out = b"HTTP/1.1 %d X\r\nContent-Length: %d\r\nContent-Type: application/json\r\n\r\n%s" % (
                    status, 0 if method == "HEAD" else len(body), b"" if method == "HEAD" else body)
            writer.write(out)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, ValueError):
        pass
    finally:
        writer.close()


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("port", type=int)
    ap.add_argument("--stall-at", type=float, default=0.0)
    ap.add_argument("--stall-for", type=float, default=0.0)
    ap.add_argument("--close-every", type=int, default=0)
    args = ap.parse_args()
    st = State()
    server = await asyncio.start_server(lambda r, w: handle(r, w, args, st), "127.0.0.1", args.port,
                                        backlog=1024)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
