// One box's API for the web client: DPoP-bound tokens (RFC 9449), that box's nonces,
// refresh. The realtime gateway is `Gateway` in gateway.js; the boxes in boxes.js.
//
//   const home = new Api(homeOrigin, state)          the box that holds the account
//   const other = new Api(origin, state, home)       any other box the user uses
//   await api.request(method, path, body?)  -> parsed JSON (or null for 204); throws ApiError
//   await api.upload(path, blob, contentType) -> parsed JSON
//   await api.fetchBlob(path)                -> Blob (files need DPoP, so <img src> cannot)
//
// Every box gets proofs signed by the one device key, each with that box's own nonce.
// The home signs in with the password (or a device certificate) and refreshes its token.
// Another box is sent the home's access token with the device certificate
// (`Hearth-Device-Certificate`), K_id's word that this device key belongs to the user at
// the home: Refrain's path. While the home cannot be reached and its token has run out,
// another box is signed in at with its own device-certificate grant instead (mzchat's
// path), and the home is tried again every 30 s; once it answers, its tokens are used
// again.
//
// `request` retries once on `use_dpop_nonce` with the nonce the box gave, refreshes the
// access token when it is about to expire or is refused as invalid, and never retries a
// request otherwise. A box that cannot be reached (network down, switched off, or a
// certificate the browser has not accepted: a page cannot tell these apart) throws an
// ApiError with status 0 and code `unreachable`.

import { dpopProof } from './crypto.js';

export const CERT_GRANT = 'urn:hearth:params:oauth:grant-type:device-certificate';
const HOME_RETRY_MS = 30000;

/** A token is renewed this long before it runs out: 30 s, or a third of a short life. */
function margin(lifetimeMs) {
  return Math.min(30000, lifetimeMs / 3);
}

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message || code || `HTTP ${status}`);
    this.status = status;
    this.code = code || '';
  }
}

/** Whether `e` says the box did not answer at all (rather than answering no). */
export function unreachable(e) {
  return e instanceof ApiError && e.status === 0 && e.code === 'unreachable';
}

async function errorOf(response) {
  let body = {};
  try {
    body = await response.json();
  } catch (e) {
    body = {};
  }
  return new ApiError(response.status, body.error, body.message || body.error_description);
}

/** `fetch`, with a box that does not answer turned into ApiError `unreachable`. */
export async function reach(url, init) {
  try {
    return await fetch(url, init);
  } catch (e) {
    throw new ApiError(0, 'unreachable', `${new URL(url).host} cannot be reached`);
  }
}

export class Api {
  constructor(origin, state, home) {
    this.origin = origin;
    this.state = state;
    this.home = home || null; // the home's Api, for a box other than the home
    this.nonce = null;
    this.accessToken = null; // the home: its token; another box: its own (fallback) token
    this.expiresAt = 0;
    this.renewAt = 0; // when the token is renewed, a little before it expires
    this.refreshToken = null; // another box's own refresh token (fallback only)
    this.fallback = false; // another box: signed in with the device certificate
    this.nextHomeTry = 0;
    this.certificate = null; // async () => the device certificate (set by boxes.js)
    this.onSession = null; // the home: called when the refresh token changes
    this.onSignedOut = null; // the home: called when the session is gone for good
    this.onFallback = null; // another box: called when it switches to or from fallback
    this.refreshing = null; // the refresh under way
    this.signingIn = null; // the fallback sign-in under way
  }

  remember(response) {
    const nonce = response.headers.get('DPoP-Nonce');
    if (nonce) this.nonce = nonce;
  }

  /** The token endpoint of this box; returns the grant. */
  async grant(form) {
    const url = `${this.origin}/oauth/token`;
    for (let attempt = 0; attempt < 2; attempt++) {
      const proof = await dpopProof(this.state.deviceKey, this.state.jwk, 'POST', url, this.nonce);
      const response = await reach(url, {
        method: 'POST',
        headers: { DPoP: proof, 'Content-Type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams(form).toString(),
      });
      this.remember(response);
      if (response.ok) return response.json();
      const error = await errorOf(response);
      if (error.code === 'use_dpop_nonce' && attempt === 0) continue;
      throw error;
    }
    throw new ApiError(400, 'use_dpop_nonce', 'the box kept refusing the DPoP nonce');
  }

  /** Signs in at the home (password, refresh or certificate grant): the session's token. */
  async token(form) {
    const grant = await this.grant(form);
    this.accessToken = grant.access_token;
    this.expiresAt = Date.now() + grant.expires_in * 1000;
    this.renewAt = this.expiresAt - margin(grant.expires_in * 1000);
    this.state.refreshToken = grant.refresh_token;
    this.state.userId = grant.user_id;
    if (this.onSession) await this.onSession(this.state);
    return grant;
  }

  login(username, password) {
    return this.token({ grant_type: 'password', username, password });
  }

  /** One refresh at a time: a refresh token is spent by its use, so two at once would
   *  look like a stolen token to the box. */
  refresh() {
    if (!this.refreshing) {
      this.refreshing = this.refreshOnce().finally(() => { this.refreshing = null; });
    }
    return this.refreshing;
  }

  async refreshOnce() {
    if (!this.state.refreshToken) throw new ApiError(401, 'not_signed_in', 'not signed in');
    try {
      return await this.token({ grant_type: 'refresh_token', refresh_token: this.state.refreshToken });
    } catch (e) {
      if (e.status === 400 || e.status === 401) {
        this.state.refreshToken = null;
        if (this.onSignedOut) this.onSignedOut(e);
      }
      throw e;
    }
  }

  /** The home's token, refreshed when it is about to run out (or `force`). */
  async fresh(force) {
    if (force || !this.accessToken || Date.now() > this.renewAt) await this.refresh();
    return this.accessToken;
  }

  /** Another box: this box's own session from the device certificate, while the home is away. */
  async ownToken(force) {
    if (!force && this.accessToken && Date.now() < this.renewAt) return this.accessToken;
    if (!this.signingIn) this.signingIn = this.signInHere().finally(() => { this.signingIn = null; });
    return this.signingIn;
  }

  async signInHere() {
    let grant = null;
    if (this.refreshToken) {
      grant = await this.grant({ grant_type: 'refresh_token', refresh_token: this.refreshToken }).catch((e) => {
        if (unreachable(e)) throw e;
        return null;
      });
    }
    if (!grant) grant = await this.grant({ grant_type: CERT_GRANT, device_certificate: await this.certificate() });
    this.accessToken = grant.access_token;
    this.expiresAt = Date.now() + grant.expires_in * 1000;
    this.renewAt = this.expiresAt - margin(grant.expires_in * 1000);
    this.refreshToken = grant.refresh_token || null;
    return this.accessToken;
  }

  setFallback(on) {
    if (this.fallback === on) return;
    this.fallback = on;
    if (!on) {
      this.accessToken = null;
      this.refreshToken = null;
    }
    if (this.onFallback) this.onFallback(on);
  }

  /** The Authorization token and extra headers for a request to this box. */
  async credentials(force) {
    if (!this.home) return { token: await this.fresh(force), headers: {} };
    if (this.fallback && Date.now() >= this.nextHomeTry) {
      this.nextHomeTry = Date.now() + HOME_RETRY_MS;
      try {
        await this.home.fresh(false);
        this.setFallback(false);
      } catch (e) {
        if (!unreachable(e)) throw e;
      }
    }
    if (!this.fallback) {
      try {
        const token = await this.home.fresh(force);
        return { token, headers: { 'Hearth-Device-Certificate': await this.certificate() } };
      } catch (e) {
        if (!unreachable(e)) throw e;
        this.nextHomeTry = Date.now() + HOME_RETRY_MS;
        this.setFallback(true);
      }
    }
    return { token: await this.ownToken(force), headers: {} };
  }

  /** The home answers again: the next request to this box tries the home's token. */
  homeIsBack() {
    this.nextHomeTry = 0;
  }

  async send(method, path, body, contentType, raw) {
    let { token, headers: extra } = await this.credentials(false);
    const url = `${this.origin}${path}`;
    let refreshed = false;
    for (let attempt = 0; attempt < 3; attempt++) {
      const proof = await dpopProof(this.state.deviceKey, this.state.jwk, method, url, this.nonce, token);
      const headers = { ...extra, Authorization: `DPoP ${token}`, DPoP: proof };
      if (body !== undefined) headers['Content-Type'] = contentType;
      const response = await reach(url, { method, headers, body });
      this.remember(response);
      if (response.ok) {
        if (raw) return response;
        if (response.status === 204) return null;
        return response.json();
      }
      const error = await errorOf(response);
      const challenge = response.headers.get('WWW-Authenticate') || '';
      if (response.status === 401 && (error.code === 'use_dpop_nonce' || challenge.includes('use_dpop_nonce'))) {
        continue;
      }
      if (response.status === 401 && error.code === 'invalid_token' && !refreshed) {
        refreshed = true;
        ({ token, headers: extra } = await this.credentials(true));
        continue;
      }
      throw error;
    }
    throw new ApiError(401, 'use_dpop_nonce', 'the box kept refusing the request');
  }

  request(method, path, body) {
    return this.send(method, path, body === undefined ? undefined : JSON.stringify(body), 'application/json');
  }

  upload(path, blob, contentType) {
    return this.send('POST', path, blob, contentType || 'application/octet-stream');
  }

  async fetchBlob(path) {
    const response = await this.send('GET', path, undefined, undefined, true);
    return response.blob();
  }
}

/** `POST /api/v1/register`, invite previews and a box's description need no token. */
export async function publicRequest(origin, method, path, body) {
  const response = await reach(`${origin}${path}`, {
    method,
    headers: body === undefined ? {} : { 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!response.ok) throw await errorOf(response);
  return response.status === 204 ? null : response.json();
}
