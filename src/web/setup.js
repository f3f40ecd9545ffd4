// The box's own pages before anyone signs in: "Set up this Hearth" while the box has no
// administrator (the setup code, the box's name, who may register, and the owner's
// account, made exactly as sign-up makes one: K_id in this browser, wrapped under the
// password), and the page a password-reset link opens.

import { publicRequest } from './api.js';
import * as keys from './crypto.js';
import * as store from './store.js';
import { $, showError } from './dom.js';
import { origin, s } from './state.js';
import { freshDevice, newApi, showApp, showAuth } from './auth.js';

/** `ab01…` as `AB:01:…`, the way browsers show a certificate's SHA-256. */
export function displayFingerprint(hex) {
  return String(hex || '').replace(/[^0-9a-fA-F]/g, '').toUpperCase().match(/.{1,2}/g)?.join(':') || '';
}

/** The setup page, for a box whose `/.well-known/hearth` says `setup`. */
export function showSetup(wk) {
  $('auth').hidden = true;
  $('app').hidden = true;
  $('setup').hidden = false;
  $('setup-name').value = wk.name || 'Hearth';
  $('setup-code-row').hidden = !wk.setup_code_required;
  $('setup-code-help').hidden = !wk.setup_code_required;
  $('setup-code').required = Boolean(wk.setup_code_required);
  if (wk.tls_fingerprint) {
    $('setup-fingerprint').textContent = displayFingerprint(wk.tls_fingerprint);
    $('setup-fingerprint-help').textContent = 'This is the SHA-256 fingerprint of the certificate this page came with. '
      + 'It must be the same as the one in hearth-setup.txt on the SD card and on the box\'s console screen; '
      + 'your browser shows the one it received under the address bar\'s certificate or "Not secure" details. '
      + 'If they differ, another device is answering in the box\'s name: do not go on.';
  } else {
    $('setup-fingerprint').textContent = 'none: this box serves plain HTTP';
    $('setup-fingerprint-help').textContent = 'Without HTTPS nothing proves this page comes from the box; set it up only on a network you trust.';
  }
  (wk.setup_code_required ? $('setup-code') : $('setup-name')).focus();
}

async function claim() {
  const username = $('setup-username').value.trim();
  const password = $('setup-password').value;
  const device = await freshDevice();
  const identity = await keys.newIdentityKey();
  const wk = await publicRequest(origin, 'GET', '/.well-known/hearth');
  $('setup-status').textContent = 'Making your keys…';
  const owner = {
    username,
    password,
    identity_key: await keys.userIdOf(identity),
    device_certificate: await keys.deviceCertificate(identity, device.jkt, wk.origin),
    key_backup: await keys.wrapIdentity(identity, password),
  };
  const body = {
    name: $('setup-name').value.trim(),
    registration: $('setup-registration').value,
    owner,
  };
  if (wk.setup_code_required) body.code = $('setup-code').value.trim();
  await publicRequest(origin, 'POST', '/api/v1/setup', body);
  s.state = { ...device, identity, username, home: wk.origin };
  s.api = newApi();
  await s.api.login(username, password);
  await store.saveState(s.state);
  $('server-name').textContent = body.name;
  document.title = body.name;
}

/** The page a reset link (`/#reset=SECRET`) opens. */
export async function showReset(secret) {
  $('auth').hidden = true;
  $('app').hidden = true;
  $('setup').hidden = true;
  $('reset').hidden = false;
  const path = `/api/v1/password-resets/${encodeURIComponent(secret)}`;
  let username = '';
  try {
    const preview = await publicRequest(origin, 'GET', path);
    username = preview.username;
    $('reset-who').textContent = `For ${preview.username}, until ${new Date(preview.expires_at * 1000).toLocaleString()}.`;
  } catch (e) {
    $('reset-form').hidden = true;
    showError('reset-error', e);
    $('reset-error').hidden = false;
    $('reset-done').hidden = false;
    return;
  }
  $('reset-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    $('reset-error').textContent = '';
    $('reset-submit').disabled = true;
    try {
      const body = { password: $('reset-password').value };
      // A browser still signed in as this person holds K_id: it wraps it under the new
      // password, so the backup is replaced rather than dropped.
      const saved = await store.loadState().catch(() => null);
      if (saved && saved.identity && saved.username === username) {
        body.key_backup = await keys.wrapIdentity(saved.identity, body.password);
      }
      await publicRequest(origin, 'POST', path, body);
      $('reset-form').hidden = true;
      $('reset-who').textContent = 'Your password is set.';
      $('reset-done').hidden = false;
      history.replaceState(null, '', '/');
    } catch (err) {
      showError('reset-error', err);
    } finally {
      $('reset-submit').disabled = false;
    }
  });
}

export function wireSetup() {
  $('setup-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    $('setup-error').textContent = '';
    $('setup-submit').disabled = true;
    try {
      await claim();
      $('setup-password').value = '';
      $('setup-status').textContent = '';
      $('setup').hidden = true;
      await showApp();
    } catch (err) {
      s.state = null;
      s.api = null;
      $('setup-status').textContent = '';
      showError('setup-error', err);
    } finally {
      $('setup-submit').disabled = false;
    }
  });
  $('setup-signin').addEventListener('click', () => {
    $('setup').hidden = true;
    showAuth();
  });
}
