"""A real HTTP/1.1 keep-alive backend for the gateway's end-to-end tests.

    python3 gw_backend.py PORT NAME [--health-file PATH] [--fail-percent P]

Answers as its own process, so tests can kill -9 it, SIGSTOP it or make its
health check fail. Every response carries `X-Backend: NAME`. Paths:
    /health/ready   200, or 503 while --health-file exists
    /status/NNN     answers with status NNN
    /slow?ms=N      waits N ms first
    /chunked        a chunked body in three chunks
    /big?n=N        N bytes of body (Content-Length)
    /echo           JSON: method, path, the request headers, body length and sha256
    anything else   JSON {"backend": NAME, "path": ...}
Request bodies are read with Content-Length or chunked framing.
--fail-percent P answers 500 to P % of the requests outside /health*
(deterministically: an even spread, not a random share), a bad version for
the deploy tests.
"""
import argparse
import asyncio
import hashlib
import json
import os
import urllib.parse


async def read_body(reader, headers):
    te = headers.get("transfer-encoding", "")
    if "chunked" in te.lower():
        body = b""
        while True:
            line = await reader.readuntil(b"\r\n")
            size = int(line.split(b";")[0].strip(), 16)
            if size == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":
                    pass
                return body
            body += await reader.readexactly(size)
            await reader.readexactly(2)
    n = int(headers.get("content-length", "0") or 0)
    return await reader.readexactly(n) if n else b""


def respond(writer, status, body, extra=(), chunked=False, name=""):
    head = [f"HTTP/1.1 {status} X", f"X-Backend: {name}", "Content-Type: application/json"]
    head += list(extra)
    if chunked:
        head.append("Transfer-Encoding: chunked")
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode())
        for part in body:
            writer.write(b"%x\r\n%s\r\n" % (len(part), part))
        writer.write(b"0\r\n\r\n")
    else:
        head.append(f"Content-Length: {len(body)}")
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)


async def handle(reader, writer, args):
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            hdrs, raw = {}, []
            for line in lines[1:]:
                if ":" in line:
                    k, v = line.split(":", 1)
                    hdrs[k.strip().lower()] = v.strip()
                    raw.append([k.strip(), v.strip()])
            if hdrs.get("expect", "").lower() == "100-continue":
                writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            body = await read_body(reader, hdrs)
            url = urllib.parse.urlsplit(target)
            q = urllib.parse.parse_qs(url.query)
            path = url.path
            if args.fail_percent and not path.startswith("/health"):
                args.fail_acc += args.fail_percent
                if args.fail_acc >= 100:
                    args.fail_acc -= 100
                    respond(writer, 500, b'{"error":"injected"}', name=args.name)
                    await writer.drain()
                    continue
            if path == "/health/ready":
                ok = not (args.health_file and os.path.exists(args.health_file))
                respond(writer, 200 if ok else 503, b'{"ready":%s}' % (b"true" if ok else b"false"),
                        name=args.name)
            elif path.startswith("/status/"):
                respond(writer, int(path[8:11]), b'{"status":"set"}', name=args.name)
            elif path == "/slow":
                await asyncio.sleep(int(q.get("ms", ["100"])[0]) / 1000)
                respond(writer, 200, json.dumps({"backend": args.name, "slow": True}).encode(),
                        name=args.name)
            elif path == "/chunked":
                respond(writer, 200, [b'{"a":', b'"chunked"', b"}"], chunked=True, name=args.name)
            elif path == "/big":
                respond(writer, 200, b"x" * int(q.get("n", ["100000"])[0]), name=args.name)
            elif path == "/echo":
                doc = {"backend": args.name, "method": method, "target": target, "headers": raw,
                       "body_len": len(body), "sha256": hashlib.sha256(body).hexdigest()}
                respond(writer, 200, json.dumps(doc).encode(), name=args.name)
            else:
                respond(writer, 200, json.dumps({"backend": args.name, "path": path}).encode(),
                        name=args.name)
            await writer.drain()
            if hdrs.get("connection", "").lower() == "close":
                break
    except (asyncio.IncompleteReadError, ConnectionError, ValueError):
        pass
    finally:
        writer.close()


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("port", type=int)
    ap.add_argument("name")
    ap.add_argument("--health-file")
    ap.add_argument("--fail-percent", type=float, default=0.0)
    args = ap.parse_args()
    args.fail_acc = 0.0
    srv = await asyncio.start_server(lambda r, w: handle(r, w, args), "127.0.0.1", args.port,
                                     backlog=1024, limit=1 << 20)
    async with srv:
        await srv.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
