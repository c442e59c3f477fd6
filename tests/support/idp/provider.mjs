// The OpenID Connect provider of the proxy's tests: panva's certified `oidc-provider`, on
// 127.0.0.1, issuing JWT access tokens by the client-credentials grant.
//
//   node provider.mjs --port P --keys FILE [--rotate] [--audience A]
//
// FILE holds the private signing keys (one RSA, one EC P-256); it is created when missing and
// replaced by new keys with --rotate, so restarting the provider with --rotate is a key rotation.
// Clients (secret `test-client-secret`, auth client_secret_post):
//   wsproxy-rs256   RS256 token, 300 s      wsproxy-es256  ES256 token, 300 s
//   wsproxy-short   RS256 token, 10 s       wsproxy-alice  RS256, with Kafka credential claims
//   wsproxy-kafka   RS256 token, 300 s, auth client_secret_basic (the proxy's own Kafka
//                   OAUTHBEARER identity; its `sub` is its client id)
//   wsproxy-kafka-short  the same with 12 s tokens (refreshes within a test)
// POST /test/mint {"claims":{...},"header":{...},"sign":"rsa|ec|foreign|none|hs256-with-public-key"}
// signs arbitrary (also broken) tokens with the provider's own keys, for the negative tests.
// Prints `ready <issuer>` on stdout once it listens.
import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import Provider from 'oidc-provider';
import * as jose from 'jose';

const args = process.argv.slice(2);
const arg = (name, fallback) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : fallback;
};
const port = Number(arg('--port', '0'));
const keysFile = arg('--keys');
const audience = arg('--audience', 'urn:wsproxy:test');
if (!port || !keysFile) {
  console.error('usage: provider.mjs --port P --keys FILE [--rotate] [--audience A]');
  process.exit(2);
}

async function newKey(alg) {
  const { privateKey } = await jose.generateKeyPair(alg, { extractable: true });
  const jwk = await jose.exportJWK(privateKey);
  return { ...jwk, alg, use: 'sig', kid: `${alg.toLowerCase()}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}` };
}

let keys;
if (existsSync(keysFile) && !args.includes('--rotate')) {
  keys = JSON.parse(readFileSync(keysFile, 'utf8')).keys;
} else {
  keys = [await newKey('RS256'), await newKey('ES256')];
  writeFileSync(keysFile, JSON.stringify({ keys }, null, 2));
}
const byAlg = Object.fromEntries(keys.map((k) => [k.alg, k]));

const clientTable = {
  'wsproxy-rs256': { alg: 'RS256', ttl: 300 },
  'wsproxy-es256': { alg: 'ES256', ttl: 300 },
  'wsproxy-short': { alg: 'RS256', ttl: 10 },
  'wsproxy-alice': { alg: 'RS256', ttl: 300, claims: { kafka: { user: 'alice', password: 'alice-secret' } } },
  'wsproxy-kafka': { alg: 'RS256', ttl: 300, auth: 'client_secret_basic' },
  'wsproxy-kafka-short': { alg: 'RS256', ttl: 12, auth: 'client_secret_basic' },
};
const issuer = `http://127.0.0.1:${port}`;
const provider = new Provider(issuer, {
  jwks: { keys },
  clients: Object.keys(clientTable).map((client_id) => ({
    client_id,
    client_secret: 'test-client-secret',
    grant_types: ['client_credentials'],
    redirect_uris: [],
    response_types: [],
    token_endpoint_auth_method: clientTable[client_id].auth ?? 'client_secret_post',
  })),
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => audience,
      useGrantedResource: () => true,
      getResourceServerInfo: (_ctx, resource, client) => {
        const c = clientTable[client.clientId];
        return {
          scope: 'kafka',
          audience: resource,
          accessTokenTTL: c.ttl,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: c.alg } },
        };
      },
    },
  },
  extraTokenClaims: (_ctx, token) => clientTable[token.clientId]?.claims,
});

const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');

async function mint({ claims, header = {}, sign = 'rsa' }) {
  if (sign === 'none') return `${b64({ alg: 'none', typ: 'JWT', ...header })}.${b64(claims)}.`;
  if (sign === 'hs256-with-public-key') {
    // The classic algorithm confusion: HMAC keyed with the RSA public key.
    const pub = await jose.importJWK({ kty: 'RSA', n: byAlg.RS256.n, e: byAlg.RS256.e }, 'RS256');
    const pem = await jose.exportSPKI(pub);
    return new jose.SignJWT(claims)
      .setProtectedHeader({ alg: 'HS256', kid: byAlg.RS256.kid, ...header })
      .sign(new TextEncoder().encode(pem));
  }
  const alg = sign === 'ec' ? 'ES256' : 'RS256';
  const kid = byAlg[alg].kid;
  const key = sign === 'foreign'
    ? (await jose.generateKeyPair(alg)).privateKey
    : await jose.importJWK(byAlg[alg], alg);
  return new jose.SignJWT(claims).setProtectedHeader({ alg, kid, typ: 'JWT', ...header }).sign(key);
}

provider.use(async (ctx, next) => {
  if (ctx.path !== '/test/mint' || ctx.method !== 'POST') return next();
  let raw = '';
  for await (const chunk of ctx.req) raw += chunk;
  ctx.type = 'text/plain';
  ctx.body = await mint(JSON.parse(raw));
});

provider.listen(port, '127.0.0.1', () => {
  console.log(`ready ${issuer}`);
});
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0));
