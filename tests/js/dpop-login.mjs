// An independent DPoP client (panva's `dpop`, WebCrypto keys) against a Hearth server:
// the password grant at /oauth/token, then GET /api/v1/users/@me with the DPoP-bound token.
//
//   node tests/js/dpop-login.mjs ORIGIN USER PASSWORD [ES256|Ed25519]
//
// Prints the user as JSON and exits 0 only if the server says it is USER, with the id the
// token endpoint named. Diagnostics go to stderr.
import { generateKeyPair, generateProof } from 'dpop';

const [origin, username, password, alg = 'ES256'] = process.argv.slice(2);
if (!origin || !username || password === undefined) {
  console.error('usage: node dpop-login.mjs ORIGIN USER PASSWORD');
  process.exit(2);
}

function fail(message) {
  console.error(`dpop-login: ${message}`);
  process.exit(1);
}

async function readJson(response) {
  const text = await response.text();
  try {
    return JSON.parse(text);
  } catch {
    fail(`${response.url} answered ${response.status} with a body that is not JSON: ${text}`);
  }
}

// ES256 by default; this library names Ed25519 proofs "Ed25519" (RFC 9864), which the
// server accepts beside "EdDSA".
const keypair = await generateKeyPair(alg);
let nonce; // The server's latest DPoP-Nonce.

// Sends a request with a fresh proof; on `use_dpop_nonce` retries once with the nonce the
// server supplied in DPoP-Nonce (RFC 9449 §8 and §9).
async function send(url, method, { headers = {}, body, accessToken } = {}) {
  for (let attempt = 1; ; attempt++) {
    const proof = await generateProof(keypair, url, method, nonce, accessToken);
    const response = await fetch(url, {
      method,
      headers: { ...headers, DPoP: proof },
      body,
    });
    const supplied = response.headers.get('dpop-nonce');
    if (supplied) nonce = supplied;
    const json = await readJson(response);
    const challenge = response.headers.get('www-authenticate') ?? '';
    const wantsNonce =
      (response.status === 400 && json.error === 'use_dpop_nonce') ||
      (response.status === 401 && /error="use_dpop_nonce"/.test(challenge));
    if (wantsNonce && attempt === 1) {
      if (!supplied) fail(`${url}: use_dpop_nonce without a DPoP-Nonce header`);
      console.error(`dpop-login: ${method} ${url}: server asked for nonce, retrying`);
      continue;
    }
    return { response, json };
  }
}

const tokenUrl = `${origin}/oauth/token`;
const grant = await send(tokenUrl, 'POST', {
  headers: { 'content-type': 'application/x-www-form-urlencoded' },
  body: new URLSearchParams({ grant_type: 'password', username, password }).toString(),
});
if (grant.response.status !== 200) {
  fail(`token request: ${grant.response.status} ${JSON.stringify(grant.json)}`);
}
const { access_token: accessToken, token_type: tokenType, user_id: userId } = grant.json;
if (typeof accessToken !== 'string' || String(tokenType).toLowerCase() !== 'dpop') {
  fail(`unexpected token answer: ${JSON.stringify(grant.json)}`);
}

const meUrl = `${origin}/api/v1/users/@me`;
const me = await send(meUrl, 'GET', {
  headers: { authorization: `DPoP ${accessToken}` },
  accessToken,
});
if (me.response.status !== 200) {
  fail(`GET /api/v1/users/@me: ${me.response.status} ${JSON.stringify(me.json)}`);
}
console.log(JSON.stringify(me.json));
if (me.json.id !== userId) fail(`id ${me.json.id} is not the token's user ${userId}`);
if (me.json.name !== username || me.json.username !== username) {
  fail(`name ${me.json.name} / username ${me.json.username} is not ${username}`);
}
