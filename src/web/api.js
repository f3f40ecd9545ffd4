// The server's API for the web client: DPoP-bound tokens (RFC 9449), nonces, refresh.
// The realtime gateway is `Gateway` in gateway.js.
//
//   const api = new Api(origin, state)    state: {deviceKey, jwk, jkt, refreshToken, userId, ...}
//   await api.request(method, path, body?)  -> parsed JSON (or null for 204); throws ApiError
//   await api.upload(path, blob, contentType) -> parsed JSON
//   await api.fetchBlob(path)                -> Blob (files need DPoP, so <img src> cannot)
//
// `request` retries once on `use_dpop_nonce` with the nonce the server gave, refreshes the
// access token when it is about to expire or is refused as invalid, and never retries a
// request otherwise.

import { dpopProof } from './crypto.js';

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message || code || `HTTP ${status}`);
    this.status = status;
    this.code = code || '';
  }
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

export class Api {
  constructor(origin, state) {
    this.origin = origin;
    this.state = state;
    this.nonce = null;
    this.accessToken = null;
    this.expiresAt = 0;
    this.onSession = null; // called when the refresh token changes
    this.onSignedOut = null; // called when the session is gone for good
  }

  remember(response) {
    const nonce = response.headers.get('DPoP-Nonce');
    if (nonce) this.nonce = nonce;
  }

  async token(form) {
    const url = `${this.origin}/oauth/token`;
    for (let attempt = 0; attempt < 2; attempt++) {
      const proof = await dpopProof(this.state.deviceKey, this.state.jwk, 'POST', url, this.nonce);
      const response = await fetch(url, {
        method: 'POST',
        headers: { DPoP: proof, 'Content-Type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams(form).toString(),
      });
      this.remember(response);
      if (response.ok) {
        const grant = await response.json();
        this.accessToken = grant.access_token;
        this.expiresAt = Date.now() + grant.expires_in * 1000;
        this.state.refreshToken = grant.refresh_token;
        this.state.userId = grant.user_id;
        if (this.onSession) await this.onSession(this.state);
        return grant;
      }
      const error = await errorOf(response);
      if (error.code === 'use_dpop_nonce' && attempt === 0) continue;
      throw error;
    }
    throw new ApiError(400, 'use_dpop_nonce', 'the server kept refusing the DPoP nonce');
  }

  login(username, password) {
    return this.token({ grant_type: 'password', username, password });
  }

  async refresh() {
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

  async send(method, path, body, contentType, raw) {
    if (!this.accessToken || Date.now() > this.expiresAt - 30000) await this.refresh();
    const url = `${this.origin}${path}`;
    let refreshed = false;
    for (let attempt = 0; attempt < 3; attempt++) {
      const proof = await dpopProof(this.state.deviceKey, this.state.jwk, method, url, this.nonce, this.accessToken);
      const headers = { Authorization: `DPoP ${this.accessToken}`, DPoP: proof };
      if (body !== undefined) headers['Content-Type'] = contentType;
      const response = await fetch(url, { method, headers, body });
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
        await this.refresh();
        continue;
      }
      throw error;
    }
    throw new ApiError(401, 'use_dpop_nonce', 'the server kept refusing the request');
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

/** `POST /api/v1/register` and the server's identity need no token. */
export async function publicRequest(origin, method, path, body) {
  const response = await fetch(`${origin}${path}`, {
    method,
    headers: body === undefined ? {} : { 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!response.ok) throw await errorOf(response);
  return response.status === 204 ? null : response.json();
}
