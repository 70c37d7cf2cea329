// Drives the reference AT Protocol stack (@atproto/dev-env: PLC + PDS + AppView) for the
// Python tests.
//
// Started by tests/atproto/harness.py as `node driver.mjs` with ATPROTO_HARNESS_DIR naming the
// provisioned install (package.json + node_modules, see provision.sh). Protocol, one JSON
// object per line, every line this script writes for the harness prefixed with "@@ " so that
// whatever the servers log to stdout is ignored:
//   out  @@ {"ready": true, "pds": url, "appview": url, "plc": url, "schema": s, "startup_ms": n}
//   in   {"id": 1, "cmd": "createAccount", "name": "alice"}
//   out  @@ {"id": 1, "ok": true, "result": {...}}   or   @@ {"id": 1, "ok": false, "error": "..."}
// The network is closed (and its Postgres schemas dropped) on the "shutdown" command, when
// stdin closes (the Python side died) and on SIGTERM/SIGINT.

import { createRequire } from 'node:module';
import path from 'node:path';
import readline from 'node:readline';
import { pathToFileURL } from 'node:url';
import zlib from 'node:zlib';

const started = Date.now();
const harnessDir = process.env.ATPROTO_HARNESS_DIR;
if (!harnessDir) {
  process.stderr.write('driver: ATPROTO_HARNESS_DIR is not set (run tests/atproto/provision.sh)\n');
  process.exit(2);
}
const req = createRequire(path.join(harnessDir, 'package.json'));
const load = async (name) => import(pathToFileURL(req.resolve(name)).href);

const schema = process.env.ATPROTO_SCHEMA || `bridge_${Date.now().toString(36).replace(/[0-9]/g, (d) => 'abcdefghij'[d])}`;
if (!/^[a-z_]+$/.test(schema)) {
  process.stderr.write(`driver: schema ${JSON.stringify(schema)} may hold only lower-case letters and underscores\n`);
  process.exit(2);
}
const pgUrl = process.env.BRIDGE_TEST_POSTGRES || 'postgres://postgres@127.0.0.1:5432/test';
const redisHost = process.env.BRIDGE_TEST_REDIS || '127.0.0.1:6379';
process.env.DB_POSTGRES_URL = pgUrl;
process.env.REDIS_HOST = redisHost;

const say = (obj) => process.stdout.write(`@@ ${JSON.stringify(obj)}\n`);

// Reserved by the PDS's handle rules: refuse them here with a clear message instead of an
// opaque server error.
const RESERVED = new Set(['team', 'acme']);

// A small valid PNG (width x height, one colour), so image posts need no asset file.
const crcTable = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});
const crc32 = (buf) => {
  let c = 0xffffffff;
  for (const b of buf) c = crcTable[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
};
const chunk = (type, data) => {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(body));
  return Buffer.concat([len, body, crc]);
};
const makePng = (width = 4, height = 3, rgb = [200, 30, 60]) => {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // colour type: truecolour
  const row = Buffer.concat([Buffer.from([0]), Buffer.from(Array(width).fill(rgb).flat())]);
  const raw = Buffer.concat(Array(height).fill(row));
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', zlib.deflateSync(raw)),
    chunk('IEND', Buffer.alloc(0)),
  ]);
};

let network;
let sc; // SeedClient
let closing = null;
const logins = new Map(); // identifier → createSession calls

const { TestNetwork } = await load('@atproto/dev-env');

const dropSchemas = async () => {
  // TestNetwork puts the AppView, bsync and ozone each in a schema derived from ours.
  const pg = req('pg');
  const client = new pg.Client({ connectionString: pgUrl });
  await client.connect();
  try {
    for (const s of [`appview_${schema}`, `bsync_${schema}`, `ozone_${schema}`, schema]) {
      await client.query(`DROP SCHEMA IF EXISTS "${s}" CASCADE`);
    }
  } finally {
    await client.end();
  }
};

const shutdown = async (code = 0) => {
  if (!closing) {
    closing = (async () => {
      try {
        if (network) await network.close();
      } catch (err) {
        process.stderr.write(`driver: close failed: ${err?.stack || err}\n`);
      }
      try {
        await dropSchemas();
      } catch (err) {
        process.stderr.write(`driver: dropping schemas failed: ${err?.message || err}\n`);
      }
    })();
  }
  // Never hang on a server that refuses to close.
  const timer = setTimeout(() => process.exit(code), 10000);
  timer.unref();
  await closing;
  process.exit(code);
};
process.on('SIGTERM', () => shutdown(0));
process.on('SIGINT', () => shutdown(0));

const did = (who) => {
  if (typeof who !== 'string' || !who) throw new Error('missing account (did or short name)');
  if (who.startsWith('did:')) return who;
  const d = sc.dids[who];
  if (!d) throw new Error(`no account named ${who}`);
  return d;
};
const headers = (who) => sc.getHeaders(did(who));
const strongRef = (r) => {
  if (!r || typeof r.uri !== 'string' || typeof r.cid !== 'string') throw new Error('expected {uri, cid}');
  return { uri: r.uri, cid: r.cid };
};

const parseAtUri = (uri) => {
  const m = /^at:\/\/([^/]+)\/([^/]+)\/([^/]+)$/.exec(uri);
  if (!m) throw new Error(`not an at:// record uri: ${uri}`);
  return { repo: m[1], collection: m[2], rkey: m[3] };
};

const appview = async (nsid, params, as) => {
  // Query the AppView directly, as `as` (a viewer) when given.
  const url = new URL(`/xrpc/${nsid}`, network.bsky.url);
  for (const [k, v] of Object.entries(params || {})) {
    if (Array.isArray(v)) v.forEach((x) => url.searchParams.append(k, String(x)));
    else if (v !== undefined && v !== null) url.searchParams.set(k, String(v));
  }
  const h = as ? await network.serviceHeaders(did(as), nsid) : {};
  const res = await fetch(url, { headers: h });
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(`${nsid} ${res.status}: ${JSON.stringify(body)}`);
  return body;
};

const commands = {
  async info() {
    return { pds: network.pds.url, appview: network.bsky.url, plc: network.plc.url, schema };
  },

  // {name, displayName?, password?} → {did, handle, password}
  async createAccount({ name, displayName, description, password }) {
    if (!/^[a-z][a-z0-9-]{2,17}$/.test(name || '')) throw new Error(`bad account name ${JSON.stringify(name)}`);
    if (RESERVED.has(name)) throw new Error(`the handle ${name}.test is reserved by the PDS; pick another name`);
    const acct = await sc.createAccount(name, {
      handle: `${name}.test`,
      email: `${name}@test.invalid`,
      password: password || `${name}-pass`,
    });
    if (displayName !== undefined) {
      await sc.agent.com.atproto.repo.putRecord(
        {
          repo: acct.did,
          collection: 'app.bsky.actor.profile',
          rkey: 'self',
          record: { $type: 'app.bsky.actor.profile', displayName, description: description || '' },
        },
        { headers: headers(acct.did), encoding: 'application/json' },
      );
    }
    return { did: acct.did, handle: acct.handle, password: acct.password };
  },

  // {by, name} → {password}: an app password, as a real bridge would be given.
  async createAppPassword({ by, name }) {
    const res = await sc.agent.com.atproto.server.createAppPassword({ name }, { headers: headers(by), encoding: 'application/json' });
    return { name: res.data.name, password: res.data.password };
  },

  async revokeAppPassword({ by, name }) {
    await sc.agent.com.atproto.server.revokeAppPassword({ name }, { headers: headers(by), encoding: 'application/json' });
    return {};
  },

  // {by, text, facets?, images?: [{alt, width?, height?}], reply?: {uri, cid} (the parent),
  //  quote?: {uri, cid}, createdAt?, langs?} → {uri, cid}
  async post({ by, text, facets, images, reply, quote, createdAt, langs }) {
    const author = did(by);
    const record = {
      $type: 'app.bsky.feed.post',
      text: text ?? '',
      createdAt: createdAt || new Date().toISOString(),
    };
    if (facets) record.facets = facets;
    if (langs) record.langs = langs;
    let media;
    if (images && images.length) {
      const uploaded = [];
      for (const img of images) {
        const w = img.width || 4;
        const h = img.height || 3;
        const res = await sc.agent.com.atproto.repo.uploadBlob(makePng(w, h), {
          headers: headers(author),
          encoding: 'image/png',
        });
        uploaded.push({ image: res.data.blob, alt: img.alt ?? '', aspectRatio: { width: w, height: h } });
      }
      media = { $type: 'app.bsky.embed.images', images: uploaded };
    }
    if (quote && media) {
      record.embed = { $type: 'app.bsky.embed.recordWithMedia', record: { record: strongRef(quote) }, media };
    } else if (quote) {
      record.embed = { $type: 'app.bsky.embed.record', record: strongRef(quote) };
    } else if (media) {
      record.embed = media;
    }
    if (reply) {
      const parent = strongRef(reply);
      const p = parseAtUri(parent.uri);
      const got = await sc.agent.com.atproto.repo.getRecord(p);
      const root = got.data.value?.reply?.root ?? parent;
      record.reply = { root: strongRef(root), parent };
    }
    const res = await sc.agent.com.atproto.repo.createRecord(
      { repo: author, collection: 'app.bsky.feed.post', record },
      { headers: headers(author), encoding: 'application/json' },
    );
    return { uri: res.data.uri, cid: res.data.cid };
  },

  async repost({ by, subject }) {
    const ref = await sc.repost(did(by), { uriStr: subject.uri, cidStr: subject.cid, get raw() { return strongRef(subject); } });
    return { uri: ref.uriStr, cid: ref.cidStr };
  },

  async like({ by, subject }) {
    const uri = await sc.like(did(by), { uriStr: subject.uri, cidStr: subject.cid, get raw() { return strongRef(subject); } });
    return { uri: uri.toString() };
  },

  async follow({ by, subject }) {
    const ref = await sc.follow(did(by), did(subject));
    return { uri: ref.uriStr, cid: ref.cidStr };
  },

  async deleteRecord({ by, uri }) {
    const p = parseAtUri(uri);
    await sc.agent.com.atproto.repo.deleteRecord(
      { repo: did(by), collection: p.collection, rkey: p.rkey },
      { headers: headers(by), encoding: 'application/json' },
    );
    return {};
  },

  // Wait until the AppView has indexed everything the PDS has sequenced.
  async processAll() {
    await network.processAll();
    return {};
  },

  // {nsid, params, as?} → the AppView's JSON answer (getPostThread, getLikes, getFollows, …)
  async appview({ nsid, params, as }) {
    return appview(nsid, params, as);
  },

  // A syntactically valid access token for `by` that expired `agoSeconds` ago, signed with the
  // dev PDS's secret: what a bridge finds after a long downtime.
  async expiredAccessToken({ by, agoSeconds }) {
    const jose = await load('jose');
    const now = Math.floor(Date.now() / 1000);
    const jwt = await new jose.SignJWT({ scope: 'com.atproto.appPass' })
      .setProtectedHeader({ typ: 'at+jwt', alg: 'HS256' })
      .setAudience(network.pds.ctx.cfg.service.did)
      .setSubject(did(by))
      .setIssuedAt(now - 7200 - (agoSeconds || 60))
      .setExpirationTime(now - (agoSeconds || 60))
      .sign(network.pds.jwtSecretKey());
    return { accessJwt: jwt };
  },

  // {identifier} → {count}: createSession calls made with that identifier (handle or email).
  async loginCount({ identifier }) {
    return { count: logins.get(String(identifier).toLowerCase()) ?? 0 };
  },

  async shutdown() {
    setImmediate(() => shutdown(0));
    return {};
  },
};

try {
  // ATPROTO_SEARCH_URL: a search service the AppView asks for actor and post search
  // (app.bsky.unspecced.searchActorsSkeleton / searchPostsSkeleton), as bsky.app's AppView
  // does; without it the AppView's own search matches handles only.
  const searchUrl = process.env.ATPROTO_SEARCH_URL || undefined;
  network = await TestNetwork.create({
    dbPostgresUrl: pgUrl,
    dbPostgresSchema: schema,
    ...(searchUrl ? { bsky: { searchUrl } } : {}),
  });
  sc = network.getSeedClient();
  // Count createSession calls (successful or not) per identifier, so that tests can check
  // that a bridge reuses its saved session instead of logging in again.
  const am = network.pds.ctx.accountManager;
  const login = am.login.bind(am);
  am.login = async (args) => {
    const key = String(args?.identifier ?? '').toLowerCase();
    logins.set(key, (logins.get(key) ?? 0) + 1);
    return login(args);
  };
} catch (err) {
  process.stderr.write(`driver: TestNetwork.create failed: ${err?.stack || err}\n`);
  try {
    await dropSchemas();
  } catch {
    // best effort
  }
  process.exit(1);
}

say({
  ready: true,
  pds: network.pds.url,
  appview: network.bsky.url,
  plc: network.plc.url,
  pdsDid: network.pds.ctx.cfg.service.did,
  schema,
  startup_ms: Date.now() - started,
});

const rl = readline.createInterface({ input: process.stdin });
rl.on('line', async (line) => {
  if (!line.trim()) return;
  let msg;
  try {
    msg = JSON.parse(line);
  } catch {
    say({ id: null, ok: false, error: `not JSON: ${line.slice(0, 200)}` });
    return;
  }
  const fn = commands[msg.cmd];
  if (!fn) {
    say({ id: msg.id, ok: false, error: `unknown command ${msg.cmd}` });
    return;
  }
  try {
    const result = await fn(msg);
    say({ id: msg.id, ok: true, result });
  } catch (err) {
    say({ id: msg.id, ok: false, error: String(err?.message || err) });
  }
});
// The Python side is gone (test run ended or was killed): leave no Node process behind.
rl.on('close', () => shutdown(0));
