"""The gateway's shared HTTP cache (RFC 9111) against a real origin
(cache_origin.py) that sets each caching header on demand and counts its
requests: freshness and Age, every Cache-Control directive, Vary, both
validators and the 304 refresh, client conditionals, stale-while-revalidate,
stale-if-error with the origin killed, invalidation, purges, the byte
budget under churn, compression, and a 1,000-request stampede."""
import asyncio
import gzip
import json
import os
import signal
import sys
import time
import urllib.parse

import pytest
from gw_util import http as requests  # noqa: E402 (default timeouts)

from conftest import HERE, free_port, wait_port, wait_until
from gw_util import Gateway, write_yaml


class Origin:
    def __init__(self, procs):
        self.port = free_port()
        self.proc = procs.start([sys.executable, os.path.join(HERE, "cache_origin.py"), self.port],
                                name="cache-origin")
        wait_port(self.port, proc=self.proc)

    @property
    def addr(self):
        return f"127.0.0.1:{self.port}"

    def count(self, target):
        return requests.get(f"http://{self.addr}/__count", params={"t": target}, timeout=5).json()


def q(path, **kw):
    return path + ("?" + urllib.parse.urlencode(kw) if kw else "")


def start(procs, tmp_path, origin, extra_gw="", cache_extra="", workers=1, env=None,
          size="4MiB", max_object="512KiB"):
    cfg = write_yaml(tmp_path, f"""
gateway:
  cache_size: {size}
  cache_max_object: {max_object}
{extra_gw}
  pools:
    - name: o
      backends: [{{address: "{origin.addr}"}}]
      health: {{enabled: false}}
      outlier: {{consecutive_failures: 0}}
  routes:
    - prefix: /plain
      pool: o
    - prefix: /
      pool: o
      cache:
        enabled: true
        ttl: [{{match: "*.js", ttl: 60s}}, {{match: /static/, ttl: 60s}}]
{cache_extra}
""")
    return Gateway(procs, config=cfg, workers=workers, env=env)


@pytest.fixture
def origin(procs):
    return Origin(procs)


def status(r):
    return r.headers.get("Cache-Status", "")


def test_fresh_hit_age_cache_status_and_metrics(procs, tmp_path, origin):
    gw = start(procs, tmp_path, origin)
    t = q("/a", cc="max-age=60")
    r1 = requests.get(gw.url(t))
    assert r1.status_code == 200 and "fwd=uri-miss" in status(r1) and "stored" in status(r1)
    r2 = requests.get(gw.url(t))
    assert r2.status_code == 200 and r2.content == r1.content
    assert status(r2).startswith("hscale; hit; ttl=")
    assert 0 <= int(r2.headers["Age"]) <= 1
    assert origin.count(t)["n"] == 1
    h = requests.head(gw.url(t))          # HEAD is answered from the GET's entry
    assert h.status_code == 200 and "hit" in status(h) and h.headers["Content-Length"] == str(len(r1.content))
    assert origin.count(t)["n"] == 1
    # an Age from the origin counts: max-age=60 with Age: 59 leaves 1 s
    t2 = q("/aged", cc="max-age=60", age="59")
    requests.get(gw.url(t2))
    r = requests.get(gw.url(t2))
    assert int(r.headers["Age"]) >= 59
    # a route without cache relays every request
    p = q("/plain/x", cc="max-age=60")
    requests.get(gw.url(p))
    requests.get(gw.url(p))
    assert origin.count(p)["n"] == 2
    m = requests.get(gw.admin_url("/metrics")).text
    assert "hscale_gateway_cache_hits_total 3" in m
    assert "hscale_gateway_cache_objects 2" in m
    stats = requests.get(gw.admin_url("/api/v1/cache")).json()
    assert stats["hits"] == 3 and stats["objects"] == 2 and stats["bytes"] > 0


@pytest.mark.parametrize("kw,cached", [
    ({"cc": "max-age=60"}, True),
    ({"cc": "no-store, max-age=60"}, False),
    ({"cc": "private, max-age=60"}, False),
    ({"cc": "public"}, False),                                  # no freshness: not served
    ({"cc": "max-age=0, s-maxage=60"}, True),                   # s-maxage wins for a shared cache
    ({"cc": "max-age=60", "cookie": "1"}, False),
    ({"expires": "Thu, 01 Jan 2099 00:00:00 GMT"}, True),
    ({"expires": "0"}, False),                                  # invalid Expires: already stale
    ({"cc": "max-age=60, must-understand, no-store"}, True),    # 200 is understood: no-store ignored
    ({"cc": "max-age=60, must-revalidate"}, True),
    ({"cc": "max-age=60, proxy-revalidate, immutable"}, True),
    ({"cc": "max-age=abc"}, False),
    ({"cc": "max-age=60", "status": "404"}, True),
    ({"cc": "max-age=60", "status": "206"}, False),
    ({"cc": "max-age=60", "chunked": "1"}, True),
])
def test_directives(procs, tmp_path, origin, kw, cached):
    gw = start(procs, tmp_path, origin)
    t = q("/d", **kw)
    a = requests.get(gw.url(t))
    b = requests.get(gw.url(t))
    assert a.content == b.content if cached else a.content != b.content
    assert origin.count(t)["n"] == (1 if cached else 2)
    assert ("hit" in status(b)) == cached


def test_no_cache_stores_but_revalidates_each_time(procs, tmp_path, origin):
    gw = start(procs, tmp_path, origin)
    t = q("/nc", cc="no-cache", etag="e1")
    requests.get(gw.url(t))
    r = requests.get(gw.url(t))
    c = origin.count(t)
    assert c["n"] == 2 and c["cond"] == 1 and c["nm"] == 1
    assert "fwd=stale; fwd-status=304" in status(r) and r.status_code == 200


def test_request_directives_and_authorization(procs, tmp_path, origin):
    gw = start(procs, tmp_path, origin)
    t = q("/auth", cc="max-age=60")
    requests.get(gw.url(t), headers={"Authorization": "Bearer x"})
    requests.get(gw.url(t), headers={"Authorization": "Bearer x"})
    assert origin.count(t)["n"] == 2                      # not stored for Authorization
    t = q("/authpub", cc="public, max-age=60")
    requests.get(gw.url(t), headers={"Authorization": "Bearer x"})
    requests.get(gw.url(t), headers={"Authorization": "Bearer x"})
    assert origin.count(t)["n"] == 1                      # unless the response allows it
    t = q("/rq", cc="max-age=60")
    requests.get(gw.url(t), headers={"Cache-Control": "no-store"})
    assert requests.get(gw.url(t), headers={"Cache-Control": "only-if-cached"}).status_code == 504
    requests.get(gw.url(t))
    assert "hit" in status(requests.get(gw.url(t)))
    r = requests.get(gw.url(t), headers={"Cache-Control": "no-cache"})
    assert "hit" not in status(r) and origin.count(t)["n"] == 3
    t = q("/imm", cc="max-age=60, immutable")
    requests.get(gw.url(t))
    r = requests.get(gw.url(t), headers={"Cache-Control": "no-cache"})   # a reload: not re-asked
    assert "hit" in status(r) and origin.count(t)["n"] == 1
    r = requests.get(gw.url(t), headers={"Cache-Control": "max-stale=0, min-fresh=3600"})
    assert "hit" not in status(r) and origin.count(t)["n"] == 2           # not fresh enough for it


def test_route_ttl_table(procs, tmp_path, origin):
    gw = start(procs, tmp_path, origin)
    for path, cached in (("/app.js", True), ("/static/logo", True), ("/app.css", False)):
        requests.get(gw.url(path))
        r = requests.get(gw.url(path))
        assert ("hit" in status(r)) == cached, path
        assert origin.count(path)["n"] == (1 if cached else 2)


def test_vary_variants_never_mixed(procs, tmp_path, origin):
    gw = start(procs, tmp_path, origin)
    t = q("/v", cc="max-age=60", vary="Accept-Language")
    for _ in range(3):
        for lang in ("fr", "en", None):
            h = {"Accept-Language": lang} if lang else {}
            r = requests.get(gw.url(t), headers=h)
            assert r.json()["lang"] == lang
    assert origin.count(t)["n"] == 3


@pytest.mark.parametrize("validator", ["etag", "lm"])
def test_revalidation_304_refreshes_headers(procs, tmp_path, origin, validator):
    gw = start(procs, tmp_path, origin)
    kw = {"etag": "v1"} if validator == "etag" else {"lm": "Sun, 06 Nov 1994 08:49:37 GMT"}
    t = q("/rv", cc="max-age=1", **kw)
    r1 = requests.get(gw.url(t))
    assert r1.headers["X-Gen"] == "1"
    time.sleep(1.2)                                       # the response's own lifetime passes
    r2 = requests.get(gw.url(t))
    c = origin.count(t)
    assert c["cond"] == 1 and c["nm"] == 1
    assert "fwd=stale; fwd-status=304" in status(r2)
    assert r2.content == r1.content and r2.headers["X-Gen"] == "2"   # headers from the 304
    r3 = requests.get(gw.url(t))
    assert "hit" in status(r3) and r3.headers["X-Gen"] == "2" and origin.count(t)["n"] == 2


def test_client_conditionals_answered_from_cache(procs, tmp_path, origin):
    gw = start(procs, tmp_path, origin)
    t = q("/cond", cc="max-age=60", etag="x7", lm="Sun, 06 Nov 1994 08:49:37 GMT")
    requests.get(gw.url(t))
    r = requests.get(gw.url(t), headers={"If-None-Match": 'W/"x7"'})
    assert r.status_code == 304 and r.headers["ETag"] == '"x7"' and "hit" in status(r)
    r = requests.get(gw.url(t), headers={"If-Modified-Since": "Mon, 07 Nov 1994 08:49:37 GMT"})
    assert r.status_code == 304
    r = requests.get(gw.url(t), headers={"If-None-Match": '"other"'})
    assert r.status_code == 200
    assert origin.count(t)["n"] == 1
    # a miss asks the origin for the whole response, not the client's conditional
    t2 = q("/cond2", cc="max-age=60", etag="y")
    r = requests.get(gw.url(t2), headers={"If-None-Match": '"y"'})
    assert r.status_code == 200 and origin.count(t2)["cond"] == 0


def test_stale_while_revalidate(procs, tmp_path, origin):
    gw = start(procs, tmp_path, origin)
    # (a response delay counts in its age: an origin slower than max-age
    # would make the refreshed copy stale at once)
    t = q("/swr", cc="max-age=2, stale-while-revalidate=30", ms="600")
    requests.get(gw.url(t))
    time.sleep(2.2)
    t0 = time.monotonic()
    r = requests.get(gw.url(t))
    assert time.monotonic() - t0 < 0.45                   # not waiting for the 600 ms origin
    assert r.headers["X-Gen"] == "1" and "stale-while-revalidate" in status(r)
    wait_until(lambda: origin.count(t)["n"] == 2, 5, "the background refresh reached the origin")
    wait_until(lambda: requests.get(gw.url(t)).headers["X-Gen"] == "2", 5, "the refreshed response is served")
    assert "hit" in status(requests.get(gw.url(t))) and origin.count(t)["n"] == 2


def test_route_stale_while_revalidate_option(procs, tmp_path, origin):
    gw = start(procs, tmp_path, origin, cache_extra="        stale_while_revalidate: 30s")
    t = q("/swr2", cc="max-age=1")
    requests.get(gw.url(t))
    time.sleep(1.2)
    r = requests.get(gw.url(t))
    assert r.headers["X-Gen"] == "1" and "stale-while-revalidate" in status(r)
    wait_until(lambda: origin.count(t)["n"] == 2, 5, "background refresh")


def test_stale_if_error_with_the_origin_killed(procs, tmp_path, origin):
    gw = start(procs, tmp_path, origin)
    ok = q("/sie", cc="max-age=1, stale-if-error=60")
    strict = q("/sie2", cc="max-age=1, stale-if-error=60, must-revalidate")
    r1 = requests.get(gw.url(ok))
    requests.get(gw.url(strict))
    os.kill(origin.proc.pid, signal.SIGKILL)
    origin.proc.wait(5)
    time.sleep(1.2)
    r = requests.get(gw.url(ok))
    assert r.status_code == 200 and r.content == r1.content and "stale-if-error" in status(r)
    assert requests.get(gw.url(strict)).status_code in (502, 503)   # must-revalidate: no stale


def test_stale_if_error_on_5xx_with_the_route_option(procs, tmp_path, origin):
    gw = start(procs, tmp_path, origin, cache_extra="        stale_if_error: 60s")
    t = q("/e5", cc="max-age=1")
    r1 = requests.get(gw.url(t))
    requests.get(f"http://{origin.addr}/__fail", params={"status": "503"})
    time.sleep(1.2)
    r = requests.get(gw.url(t))
    assert r.status_code == 200 and r.content == r1.content
    assert "fwd-status=503; detail=stale-if-error" in status(r)
    assert origin.count(t)["n"] == 2
    requests.get(f"http://{origin.addr}/__fail", params={"status": "0"})
    assert requests.get(gw.url(t)).headers["X-Gen"] == "3"      # the origin is back: refreshed


def test_invalidation_by_unsafe_methods(procs, tmp_path, origin):
    gw = start(procs, tmp_path, origin)
    a, b, c = (q(f"/inv/{n}", cc="max-age=60") for n in "abc")
    for t in (a, b, c):
        requests.get(gw.url(t))
        assert "hit" in status(requests.get(gw.url(t)))
    requests.post(gw.url(a), data=b"x")                        # the target URI
    requests.delete(gw.url(q("/inv/x", loc=gw.url(b))))         # an absolute same-origin Location
    requests.put(gw.url(q("/inv/y", loc=c)), data=b"x")         # a path Location
    for t in (a, b, c):
        assert "hit" not in status(requests.get(gw.url(t))), t
        assert origin.count(t)["n"] == 2
    requests.post(gw.url(q("/inv/z", loc="http://elsewhere.example" + a)), data=b"x")
    assert "hit" in status(requests.get(gw.url(a)))            # another origin's URI: untouched


def test_purge_by_url_prefix_and_tag(procs, tmp_path, origin):
    gw = start(procs, tmp_path, origin)
    host = f"127.0.0.1:{gw.port}"
    ts = {name: q(f"/p/{name}", cc="max-age=60", tag=tag)
          for name, tag in (("one", "blue"), ("two", "blue green"), ("three", "red"), ("four", "red"))}
    ts["five"] = q("/q/five", cc="max-age=60")
    for t in ts.values():
        requests.get(gw.url(t))

    def purge(**body):
        r = requests.post(gw.admin_url("/api/v1/cache/purge"), json=body)
        assert r.status_code == 200, r.text
        return r.json()["purged"]

    def hit(name):
        return "hit" in status(requests.get(gw.url(ts[name])))

    assert purge(tag="blue") == 2
    assert not hit("one") and not hit("two") and hit("three")
    assert purge(url=f"http://{host}{ts['three']}") == 1
    assert not hit("three") and hit("four")
    assert purge(prefix=f"http://{host}/p/") >= 1
    assert not hit("four") and hit("five")
    assert requests.post(gw.admin_url("/api/v1/cache/purge"), json={"nope": 1}).status_code == 400
    audit = requests.get(gw.admin_url("/api/v1/audit")).text
    assert "cache purge by tag blue" in audit


def test_http_and_https_are_two_keys_and_a_purge_takes_both(procs, tmp_path, origin):
    """The key carries the listener's scheme (an https page is not an http
    one), and a purge by URL or prefix takes both copies."""
    from tls_util import make_ca, make_leaf
    ca = make_ca(tmp_path)
    crt, key = make_leaf(tmp_path, ca)
    tls_port = free_port()
    gw = start(procs, tmp_path, origin,
               extra_gw=f'  tls_listen: "127.0.0.1:{tls_port}"\n  tls_cert: "{crt}"\n  tls_key: "{key}"')
    wait_port(tls_port, proc=gw.proc)
    t = q("/s/page", cc="max-age=60")
    host = {"Host": "shop.example"}
    plain = lambda: requests.get(gw.url(t), headers=host)                                   # noqa: E731
    tls = lambda: requests.get(f"https://127.0.0.1:{tls_port}{t}", headers=host, verify=str(ca[0]))  # noqa: E731
    assert "stored" in status(plain()) and "stored" in status(tls())
    assert "hit" in status(plain()) and "hit" in status(tls())
    assert origin.count(t)["n"] == 2, "one fetch per scheme"
    r = requests.post(gw.admin_url("/api/v1/cache/purge"), json={"url": f"http://shop.example{t}"})
    assert r.status_code == 200 and r.json()["purged"] == 2, r.text
    assert "hit" not in status(plain()) and "hit" not in status(tls())
    r = requests.post(gw.admin_url("/api/v1/cache/purge"), json={"prefix": "https://shop.example/s/"})
    assert r.json()["purged"] == 2, r.text


def test_byte_budget_under_churn_bounds_memory(procs, tmp_path, origin):
    gw = start(procs, tmp_path, origin, size="1MiB", max_object="128KiB",
               env={"ASAN_OPTIONS": "quarantine_size_mb=4:detect_leaks=0"})

    def rss_kib():
        with open(f"/proc/{gw.proc.pid}/status") as f:
            return next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))

    s = requests.Session()
    for i in range(40):                                   # warm up: fill the budget
        s.get(gw.url(q(f"/churn/{i}", cc="max-age=60", size="60000")))
    base = rss_kib()
    for i in range(40, 400):                              # 21 MB of responses through 1 MiB
        s.get(gw.url(q(f"/churn/{i}", cc="max-age=60", size="60000")))
    grown = rss_kib() - base
    stats = requests.get(gw.admin_url("/api/v1/cache")).json()
    assert stats["bytes"] <= 1 << 20 and stats["evictions"] >= 340 and stats["objects"] <= 17
    assert grown < 16 * 1024, f"RSS grew {grown} KiB while churning through a 1 MiB cache"
    # over cache_max_object: relayed, never stored
    big = q("/churn/big", cc="max-age=60", size="200000")
    s.get(gw.url(big))
    s.get(gw.url(big))
    assert origin.count(big)["n"] == 2


def test_compression_keeps_variants_apart(procs, tmp_path, origin):
    gw = start(procs, tmp_path, origin, extra_gw="  compression: true\n  compression_min_size: 100")
    t = q("/z", cc="max-age=60", size="4000")
    plain = requests.get(gw.url(t), headers={"Accept-Encoding": "identity"})
    assert "Content-Encoding" not in plain.headers
    r = requests.get(gw.url(t), headers={"Accept-Encoding": "gzip"}, stream=True)
    raw = r.raw.read()
    assert r.headers["Content-Encoding"] == "gzip" and "hit" in status(r)
    assert gzip.decompress(raw) == plain.content
    again = requests.get(gw.url(t), headers={"Accept-Encoding": "identity"})
    assert "Content-Encoding" not in again.headers and again.content == plain.content
    assert origin.count(t)["n"] == 1
    for _ in range(2):                     # the gzip rendition is made once, then kept
        r = requests.get(gw.url(t), headers={"Accept-Encoding": "gzip"}, stream=True)
        assert r.headers["Content-Encoding"] == "gzip" and "Accept-Encoding" in r.headers["Vary"]
        assert gzip.decompress(r.raw.read()) == plain.content
    assert requests.get(gw.admin_url("/api/v1/cache")).json()["renditions"] == 1
    nt = q("/znt", cc="max-age=60, no-transform", size="4000")
    requests.get(gw.url(nt))
    r = requests.get(gw.url(nt), headers={"Accept-Encoding": "gzip"})
    assert "hit" in status(r) and "Content-Encoding" not in r.headers      # no-transform holds on a hit


def test_uncacheable_key_is_not_serialised_behind_one_fetch(procs, tmp_path, origin):
    """After a fetch that could not be stored, concurrent misses for the key go
    to the backend together (a hit-for-miss marker), not one round behind
    another's fetch."""
    gw = start(procs, tmp_path, origin, workers=2)
    t = q("/unc", cc="no-store", ms="700")
    r = requests.get(gw.url(t))
    assert "detail=no-store" in status(r)
    t0 = time.monotonic()
    outs = asyncio.run(_stampede(gw.port, t, 20))
    took = time.monotonic() - t0
    assert all(o.startswith(b"HTTP/1.1 200") for o in outs)
    assert all(b"detail=uncacheable" in o for o in outs)
    assert origin.count(t)["n"] == 21
    assert took < 1.3, f"{took:.2f}s: the misses waited for each other (one round: 0.7 s)"


async def _one(port, target):
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode())
    await w.drain()
    data = await r.read()
    w.close()
    return data


async def _stampede(port, target, n):
    return await asyncio.gather(*[_one(port, target) for _ in range(n)])


def test_stampede_1000_concurrent_cold_requests_one_origin_request(procs, tmp_path, origin):
    gw = start(procs, tmp_path, origin, workers=2)
    t = q("/hot", cc="max-age=60", ms="500")
    outs = asyncio.run(_stampede(gw.port, t, 1000))
    assert origin.count(t)["n"] == 1
    bodies = {o.split(b"\r\n\r\n", 1)[1] for o in outs}
    assert all(o.startswith(b"HTTP/1.1 200") for o in outs) and len(bodies) == 1
    assert json.loads(bodies.pop())["gen"] == 1
    stats = requests.get(gw.admin_url("/api/v1/cache")).json()
    assert stats["misses"] == 1 and stats["hits"] == 999 and stats["coalesced"] >= 900, stats
