"""An origin for the gateway cache's end-to-end tests: every caching header
set on demand from the query string, and every request counted.

    python3 cache_origin.py PORT

GET/HEAD any path; the query says what to answer (all optional):
    cc=...        Cache-Control          expires=...   Expires (raw text)
    etag=v1       ETag: "v1"             lm=...        Last-Modified (raw text)
    vary=...      Vary                   tag=...       Cache-Tag
    age=N         Age                    cookie=1      Set-Cookie: s=1
    status=N      status (default 200)   size=N        body padded to N bytes
    ms=N          wait N ms before the head
    chunked=1     chunked framing        ctype=...     Content-Type (default application/json)
A request whose If-None-Match names the etag, or whose If-Modified-Since is
not before lm, gets a 304 with the same headers. Every response carries
X-Gen: the count of requests for its target so far. The body is JSON:
{"target", "gen", "lang"} (lang: the Accept-Language it was made for).
POST/PUT/PATCH/DELETE: 200 with Location when loc=... is given.

    /__count?t=TARGET   {"n": requests, "cond": conditional ones, "nm": 304s}
    /__fail?status=N    from now on every other request answers N (0: stop)
"""
import asyncio
import json
import sys
import urllib.parse

counts = {}
fail_status = 0      # /__fail?status=N: every other request answers N (0: off)


def count(target):
    return counts.setdefault(target, {"n": 0, "cond": 0, "nm": 0})


async def handle(reader, writer):
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            hdrs = {}
            for line in lines[1:]:
                if ":" in line:
                    k, v = line.split(":", 1)
                    hdrs[k.strip().lower()] = v.strip()
            n = int(hdrs.get("content-length", "0") or 0)
            if n:
                await reader.readexactly(n)
            url = urllib.parse.urlsplit(target)
            q = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
            if url.path == "/__count":
                body = json.dumps(count(q["t"])).encode()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                             % (len(body), body))
                await writer.drain()
                continue
            if url.path == "/__fail":
                global fail_status
                fail_status = int(q["status"])
                writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
                await writer.drain()
                continue
            c = count(target if method in ("GET", "HEAD") else f"{method} {target}")
            c["n"] += 1
            if fail_status:
                writer.write(b"HTTP/1.1 %d Failing\r\nContent-Length: 4\r\n\r\nfail" % fail_status)
                await writer.drain()
                continue
            if "ms" in q:
                await asyncio.sleep(int(q["ms"]) / 1000)
            extra = [f"X-Gen: {c['n']}"]
            for key, name in (("cc", "Cache-Control"), ("expires", "Expires"), ("lm", "Last-Modified"),
                              ("vary", "Vary"), ("tag", "Cache-Tag"), ("age", "Age")):
                if key in q:
                    extra.append(f"{name}: {q[key]}")
            if "etag" in q:
                extra.append(f'ETag: "{q["etag"]}"')
            if q.get("cookie"):
                extra.append("Set-Cookie: s=1; Path=/")
            if method not in ("GET", "HEAD"):
                if "loc" in q:
                    extra.append(f"Location: {q['loc']}")
                body = b'{"ok":true}'
                writer.write(("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n\r\n"
                              % (len(body), "\r\n".join(extra))).encode() + body)
                await writer.drain()
                continue
            inm, ims = hdrs.get("if-none-match"), hdrs.get("if-modified-since")
            if inm or ims:
                c["cond"] += 1
            not_mod = (inm is not None and "etag" in q and f'"{q["etag"]}"' in inm) or \
                      (inm is None and ims is not None and "lm" in q and ims == q["lm"])
            if not_mod:
                c["nm"] += 1
                writer.write(("HTTP/1.1 304 Not Modified\r\n%s\r\n\r\n" % "\r\n".join(extra)).encode())
                await writer.drain()
                continue
            status = int(q.get("status", "200"))
            body = json.dumps({"target": target, "gen": c["n"],
                               "lang": hdrs.get("accept-language")}).encode()
            size = int(q.get("size", "0"))
            if size > len(body):
                body = body[:-1] + b', "pad": "' + b"x" * (size - len(body) - 11) + b'"}'
            ctype = q.get("ctype", "application/json")
            h = f"HTTP/1.1 {status} X\r\nContent-Type: {ctype}\r\n" + "".join(e + "\r\n" for e in extra)
            if q.get("chunked"):
                half = len(body) // 2
                payload = b"%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n" % (half, body[:half], len(body) - half, body[half:])
                writer.write((h + "Transfer-Encoding: chunked\r\n\r\n").encode()
                             + (b"" if method == "HEAD" else payload))
            else:
                writer.write((h + f"Content-Length: {len(body)}\r\n\r\n").encode()
                             + (b"" if method == "HEAD" else body))
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def main(port):
    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=4096)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
