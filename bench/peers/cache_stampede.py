"""Cold-key stampede for bench/cache_vs_peers.sh: N connections open at
once, each sends one GET for TARGET and reads the whole answer.
    python3 cache_stampede.py PORT TARGET N
Prints "ok BAD SECONDS" (responses with status 200, others, wall time)."""
import asyncio
import sys
import time


async def one(port, target):
    try:
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        await w.drain()
        data = await r.read()
        w.close()
        return data.startswith(b"HTTP/1.1 200")
    except OSError:
        return False


async def main(port, target, n):
    t0 = time.monotonic()
    res = await asyncio.gather(*[one(port, target) for _ in range(n)])
    print(sum(res), n - sum(res), f"{time.monotonic() - t0:.2f}")


asyncio.run(main(int(sys.argv[1]), sys.argv[2], int(sys.argv[3])))
