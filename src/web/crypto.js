// Keys and signatures for the web client, with the browser's WebCrypto only.
//
// - The device key K_dev: ECDSA P-256, private part not extractable; it signs DPoP proofs
//   (ES256) and is named by its RFC 7638 thumbprint in device certificates.
// - The identity key K_id: Ed25519 (WebCrypto "Ed25519": Chromium 137+, Firefox 129+,
//   Safari 17+); its raw public key, base64url, is the user id. It signs device
//   certificates. It leaves the browser only wrapped under the password (key backup).
// - Key backup: {"v":1,"kdf":"pbkdf2-sha256","i","salt","nonce","ct"}: AES-256-GCM with
//   additional data "hearth-keywrap-v1" under PBKDF2-HMAC-SHA256(password, salt, i).

const enc = new TextEncoder();
const subtle = globalThis.crypto.subtle;

export const BACKUP_ITERATIONS = 600000;
const WRAP_AAD = enc.encode('hearth-keywrap-v1');

export function b64u(bytes) {
  const a = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  let s = '';
  for (let i = 0; i < a.length; i += 0x8000) {
    s += String.fromCharCode.apply(null, a.subarray(i, i + 0x8000));
  }
  return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

export function b64uDecode(text) {
  const s = text.replace(/-/g, '+').replace(/_/g, '/');
  const bin = atob(s + '='.repeat((4 - (s.length % 4)) % 4));
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

export function randomB64u(n) {
  return b64u(globalThis.crypto.getRandomValues(new Uint8Array(n)));
}

export async function sha256B64u(text) {
  return b64u(await subtle.digest('SHA-256', enc.encode(text)));
}

/** Whether this browser has what the client needs. */
export async function supported() {
  if (!globalThis.isSecureContext || !subtle) {
    return 'this page needs a secure context (HTTPS, or http://localhost)';
  }
  try {
    await subtle.generateKey({ name: 'Ed25519' }, false, ['sign', 'verify']);
  } catch (e) {
    return 'this browser has no Ed25519 in WebCrypto (Chromium 137+, Firefox 129+, Safari 17+ do)';
  }
  return null;
}

/** A new device key (private part not extractable). */
export async function newDeviceKey() {
  return subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign', 'verify']);
}

/** The public JWK of a device key pair, members in canonical order. */
export async function publicJwk(pair) {
  const jwk = await subtle.exportKey('jwk', pair.publicKey);
  return { crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y };
}

/** RFC 7638 thumbprint of a P-256 public JWK. */
export async function thumbprint(jwk) {
  return sha256B64u(`{"crv":"${jwk.crv}","kty":"${jwk.kty}","x":"${jwk.x}","y":"${jwk.y}"}`);
}

async function compactJws(header, claims, sign) {
  const input = `${b64u(enc.encode(JSON.stringify(header)))}.${b64u(enc.encode(JSON.stringify(claims)))}`;
  const signature = await sign(enc.encode(input));
  return `${input}.${b64u(signature)}`;
}

/** A DPoP proof (RFC 9449) for `method url`, with `nonce` and the access token's hash. */
export async function dpopProof(pair, jwk, method, url, nonce, accessToken) {
  const u = new URL(url);
  const claims = {
    jti: randomB64u(16),
    htm: method,
    htu: `${u.origin}${u.pathname}`,
    iat: Math.floor(Date.now() / 1000),
  };
  if (nonce) claims.nonce = nonce;
  if (accessToken) claims.ath = await sha256B64u(accessToken);
  // WebCrypto's ECDSA signature is already r || s, as JWS wants.
  return compactJws({ typ: 'dpop+jwt', alg: 'ES256', jwk }, claims, (data) =>
    subtle.sign({ name: 'ECDSA', hash: 'SHA-256' }, pair.privateKey, data));
}

/** A new identity key K_id (extractable: it is backed up under the password). */
export async function newIdentityKey() {
  return subtle.generateKey({ name: 'Ed25519' }, true, ['sign', 'verify']);
}

/** The user id of an identity key: its raw public key, base64url. */
export async function userIdOf(identity) {
  return b64u(await subtle.exportKey('raw', identity.publicKey));
}

/** A device certificate: K_id says the device key `jkt` acts for the user at `homeserver`. */
export async function deviceCertificate(identity, jkt, homeserver) {
  const iat = Math.floor(Date.now() / 1000);
  const claims = { sub: await userIdOf(identity), jkt, homeserver, iat, exp: iat + 365 * 24 * 3600 };
  return compactJws({ alg: 'EdDSA', typ: 'hearth-device+jwt' }, claims, (data) =>
    subtle.sign({ name: 'Ed25519' }, identity.privateKey, data));
}

/** K_id's migration proof: its signature over `new_homeserver|timestamp`, base64url. */
export async function migrationSignature(identity, newHomeserver, timestamp) {
  return b64u(await subtle.sign({ name: 'Ed25519' }, identity.privateKey, enc.encode(`${newHomeserver}|${timestamp}`)));
}

async function wrappingKey(password, salt, iterations) {
  const base = await subtle.importKey('raw', enc.encode(password), 'PBKDF2', false, ['deriveKey']);
  return subtle.deriveKey(
    { name: 'PBKDF2', hash: 'SHA-256', salt, iterations },
    base,
    { name: 'AES-GCM', length: 256 },
    false,
    ['encrypt', 'decrypt'],
  );
}

/** Wraps K_id's 32-byte private seed under the password (the key backup). */
export async function wrapIdentity(identity, password) {
  const jwk = await subtle.exportKey('jwk', identity.privateKey);
  const seed = b64uDecode(jwk.d);
  const salt = globalThis.crypto.getRandomValues(new Uint8Array(16));
  const nonce = globalThis.crypto.getRandomValues(new Uint8Array(12));
  const key = await wrappingKey(password, salt, BACKUP_ITERATIONS);
  const ct = await subtle.encrypt({ name: 'AES-GCM', iv: nonce, additionalData: WRAP_AAD }, key, seed);
  seed.fill(0);
  return JSON.stringify({
    v: 1, kdf: 'pbkdf2-sha256', i: BACKUP_ITERATIONS, salt: b64u(salt), nonce: b64u(nonce), ct: b64u(ct),
  });
}

/**
 * Opens a key backup with the password; `userId` is K_id's public key. Throws an Error whose
 * `reason` is 'unsupported' (a CLI-made argon2id backup), 'wrong_password' or 'malformed'.
 */
export async function unwrapIdentity(blob, password, userId) {
  const fail = (reason, message) => Object.assign(new Error(message), { reason });
  let b;
  try {
    b = JSON.parse(blob);
  } catch (e) {
    throw fail('malformed', 'the key backup is not readable');
  }
  if (b.v !== 1 || b.kdf !== 'pbkdf2-sha256') {
    throw fail('unsupported', `this browser cannot open a ${b.kdf} key backup`);
  }
  if (!Number.isInteger(b.i) || b.i < 1 || b.i > 5000000) throw fail('malformed', 'bad key backup');
  const key = await wrappingKey(password, b64uDecode(b.salt), b.i);
  let seed;
  try {
    seed = new Uint8Array(await subtle.decrypt(
      { name: 'AES-GCM', iv: b64uDecode(b.nonce), additionalData: WRAP_AAD }, key, b64uDecode(b.ct)));
  } catch (e) {
    throw fail('wrong_password', 'wrong password for the key backup');
  }
  const jwk = { kty: 'OKP', crv: 'Ed25519', d: b64u(seed), x: userId };
  seed.fill(0);
  const privateKey = await subtle.importKey('jwk', jwk, { name: 'Ed25519' }, true, ['sign']);
  const publicKey = await subtle.importKey('jwk', { kty: 'OKP', crv: 'Ed25519', x: userId },
    { name: 'Ed25519' }, true, ['verify']);
  return { privateKey, publicKey };
}
