// MedEase API: a Node service on node's own `http` module, as its team runs
// it, with no knowledge of hscale. Liveness and readiness are one /health
// (there is no /health/ready); the gateway's checks follow the service's
// ready_path, so this is all it needs.
//
// Run by hscale as:  node server.js  (PORT and HOST from the environment)
'use strict';
const http = require('http');
const crypto = require('crypto');

const port = Number(process.env.PORT || 3000);
const host = process.env.HOST || '127.0.0.1';
const instance = process.env.INSTANCE_ID || 'local';
const version = process.env.APP_VERSION || 'v1';

const orgs = Array.from({ length: 10 }, (_, i) => ({ id: i + 1, name: `Org ${i + 1}` }));
const patients = Array.from({ length: 500 }, (_, i) => ({
  id: i + 1, org_id: 1 + (i % 10), name: `Patient ${i + 1}`,
}));

function send(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

// A CPU-bound request: hashes for about `ms` milliseconds.
function burn(ms) {
  const end = process.hrtime.bigint() + BigInt(Math.min(ms, 2000)) * 1000000n;
  let h = Buffer.from('medease');
  let n = 0;
  while (process.hrtime.bigint() < end) {
    h = crypto.createHash('sha256').update(h).digest();
    n++;
  }
  return { rounds: n, digest: h.toString('hex').slice(0, 16) };
}

const server = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://x');
  if (url.pathname === '/health') return send(res, 200, { status: 'ok', instance, version });
  if (url.pathname === '/api/organizations') return send(res, 200, orgs);
  if (url.pathname === '/api/patients') {
    const org = Number(url.searchParams.get('org_id') || 0);
    const after = Number(url.searchParams.get('cursor') || 0);
    const page = patients.filter((p) => (!org || p.org_id === org) && p.id > after).slice(0, 20);
    return send(res, 200, { data: page, next_cursor: page.length ? page[page.length - 1].id : null });
  }
  if (url.pathname === '/api/reports/digest') {
    return send(res, 200, { ...burn(Number(url.searchParams.get('ms') || 50)), instance });
  }
  return send(res, 404, { error: 'not found' });
});

server.keepAliveTimeout = 65000;
server.listen(port, host, () => console.log(`medease ${instance} on ${host}:${port}`));
// SIGTERM: stop accepting, finish what is in flight, exit.
process.on('SIGTERM', () => server.close(() => process.exit(0)));
