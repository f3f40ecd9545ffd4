// Accounts: the sign-in screen, creating an account, signing in (recovering the identity
// key from its backup), linking this browser from another device and approving such a
// link, and signing out. Settings are in settings.js.

import { Api, CERT_GRANT, publicRequest, unreachable } from './api.js';
import * as keys from './crypto.js';
import * as store from './store.js';
import { $, dialog, el, field, showError } from './dom.js';
import { homeOrigin, origin, resetData, s } from './state.js';
import { joinInvite, offerInvite, renderGuilds } from './guilds.js';
import { closeBoxes, connectBox, ensureBox, homeBox, setStatus } from './boxes.js';
import { leaveVoice } from './voice-channel.js';
import { loadDms } from './dms.js';
import { showConsoleEntry } from './admin.js';

async function saveState() {
  await store.saveState(s.state);
}

export function authMode(signup) {
  $('tab-signin').setAttribute('aria-selected', String(!signup));
  $('tab-signup').setAttribute('aria-selected', String(signup));
  $('auth-display-row').hidden = !signup;
  $('auth-submit').textContent = signup ? 'Create account' : 'Sign in';
  $('auth-password').autocomplete = signup ? 'new-password' : 'current-password';
  $('auth-form').dataset.mode = signup ? 'signup' : 'signin';
  $('auth-error').textContent = '';
}

export async function freshDevice() {
  const deviceKey = await keys.newDeviceKey();
  const jwk = await keys.publicJwk(deviceKey);
  return { deviceKey, jwk, jkt: await keys.thumbprint(jwk) };
}

export async function signUp(username, password, display) {
  const device = await freshDevice();
  const identity = await keys.newIdentityKey();
  const wellKnown = await publicRequest(origin, 'GET', '/.well-known/hearth');
  $('auth-status').textContent = 'Making your keys…';
  const body = {
    username,
    password,
    identity_key: await keys.userIdOf(identity),
    device_certificate: await keys.deviceCertificate(identity, device.jkt, wellKnown.origin),
    key_backup: await keys.wrapIdentity(identity, password),
  };
  if (display) body.display_name = display;
  // A box that registers only people with an invite takes this box's invite being opened.
  if (wellKnown.registration === 'invite' && s.invite && (!s.invite.origin || s.invite.origin === origin)) {
    body.invite = s.invite.code;
    // The account joins the invite's guild as it is made: no "Join?" question after.
    s.invite.usedAtSignUp = true;
  }
  await publicRequest(origin, 'POST', '/api/v1/register', body);
  s.state = { ...device, identity, username, home: wellKnown.origin };
  s.api = newApi();
  await s.api.login(username, password);
}

export async function signIn(username, password) {
  const wellKnown = await publicRequest(origin, 'GET', '/.well-known/hearth');
  s.state = { ...(await freshDevice()), username, home: wellKnown.origin };
  s.api = newApi();
  await s.api.login(username, password);
  // The identity key, from the backup only this password opens.
  try {
    const answer = await s.api.request('GET', '/api/v1/users/@me/key-backup');
    if (answer && answer.key_backup) {
      s.state.identity = await keys.unwrapIdentity(answer.key_backup, password, s.state.userId);
      s.identityNote = 'identity key recovered from your backup';
    } else {
      s.identityNote = 'no key backup on the server';
    }
  } catch (e) {
    s.identityNote = e.reason === 'unsupported' ? e.message : `identity key not recovered: ${e.message}`;
  }
  await saveState();
}

// Linking this browser from a device already signed in (no password typed here).

export async function startLink() {
  $('auth-error').textContent = '';
  const device = await freshDevice();
  const username = $('auth-username').value.trim();
  const body = { device_key: device.jwk, device_name: `Browser (${navigator.platform || 'web'})` };
  if (username) body.username = username;
  let link;
  try {
    link = await publicRequest(origin, 'POST', '/api/v1/device-links', body);
  } catch (e) {
    showError('auth-error', e);
    return;
  }
  $('link-code').textContent = link.code;
  $('link-jkt').textContent = link.jkt.slice(0, 12);
  $('link-box').hidden = false;
  $('link-start').hidden = true;
  s.link = link;
  const deadline = Date.now() + link.expires_in * 1000;
  while (s.link === link && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 1500));
    if (s.link !== link) return;
    let answer;
    try {
      answer = await publicRequest(origin, 'GET', `/api/v1/device-links/mailbox/${link.mailbox}`);
    } catch (e) {
      break;
    }
    if (answer.status !== 'approved') continue;
    s.link = null;
    // The certificate the other device made for this browser's key: shown to other
    // boxes too, as this browser has no K_id to make one.
    s.state = { ...device, username: username || '', certificate: answer.device_certificate, home: null };
    s.api = newApi();
    try {
      if (!s.state.home) s.state.home = (await publicRequest(origin, 'GET', '/.well-known/hearth')).origin;
      await s.api.token({ grant_type: CERT_GRANT, device_certificate: answer.device_certificate });
      s.identityNote = 'signed in by another device (its identity key stays there)';
      await saveState();
      $('link-box').hidden = true;
      $('link-start').hidden = false;
      await showApp();
    } catch (e) {
      s.state = null;
      s.api = null;
      showError('auth-error', e);
    }
    return;
  }
  if (s.link === link) {
    s.link = null;
    $('link-box').hidden = true;
    $('link-start').hidden = false;
    $('auth-error').textContent = 'The code expired; start again.';
  }
}

export async function cancelLink() {
  const link = s.link;
  s.link = null;
  $('link-box').hidden = true;
  $('link-start').hidden = false;
  if (link) await publicRequest(origin, 'DELETE', `/api/v1/device-links/mailbox/${link.mailbox}`).catch(() => {});
}

export function approveLinkDialog() {
  const [row, code] = field('Code shown on the new device', { required: '', maxlength: '12', dataset: { testid: 'link-code-input' } });
  const shown = el('p', { class: 'muted', dataset: { testid: 'link-device' } });
  let checked = null;
  dialog('Link a new device', [row, shown], async () => {
    if (!checked || checked.typed !== code.value) {
      // First look: show the device's name and key, then approve on the second press.
      const link = await s.api.request('GET', `/api/v1/device-links/${encodeURIComponent(code.value)}`);
      checked = { typed: code.value, link };
      shown.textContent = `${link.device_name || 'A device'} with key ${link.jkt.slice(0, 12)}: if the new device shows the same, press OK again.`;
      throw new Error('Check the key, then press OK again.');
    }
    const home = s.state.home || (await publicRequest(homeOrigin(), 'GET', '/.well-known/hearth')).origin;
    const certificate = await keys.deviceCertificate(s.state.identity, checked.link.jkt, home);
    await s.api.request('POST', `/api/v1/device-links/${encodeURIComponent(code.value)}`, { device_certificate: certificate });
  });
}

export function newApi() {
  const api = new Api(homeOrigin(), s.state);
  api.onSession = saveState;
  api.onSignedOut = () => signedOut('You were signed out.');
  return api;
}

async function signedOut(message) {
  if (s.voice) await leaveVoice().catch(() => {});
  closeBoxes();
  s.api = null;
  s.state = null;
  await store.clearState();
  resetData();
  showAuth();
  if (message) $('auth-error').textContent = message;
}

export async function signOut() {
  try {
    await s.api.request('POST', '/api/v1/auth/logout', {});
  } catch (e) {
    // Signed out here either way.
  }
  await signedOut('');
}

/** Shows who may create an account here: nobody (closed), or only with an invite of this
 *  box, whose "Create account" then uses the invite opened. */
function registrationNote(mode) {
  const note = $('auth-note');
  const ownInvite = s.invite && (!s.invite.origin || s.invite.origin === origin);
  let text = '';
  let signupOpen = true;
  if (mode === 'closed') {
    text = 'Registration is closed on this box: ask its administrator for an account.';
    signupOpen = false;
  } else if (mode === 'invite' && !ownInvite) {
    text = 'This box makes accounts for people with an invite: open the invite link you were given to create one.';
    signupOpen = false;
  } else if (mode === 'invite') {
    text = 'Creating an account here uses your invite.';
  }
  note.textContent = text;
  note.hidden = !text;
  $('tab-signup').hidden = !signupOpen;
  if (!signupOpen) authMode(false);
}

export async function showAuth() {
  $('app').hidden = true;
  $('setup').hidden = true;
  $('auth').hidden = false;
  authMode($('auth-form').dataset.mode === 'signup');
  publicRequest(origin, 'GET', '/.well-known/hearth').then((wk) => registrationNote(wk.registration)).catch(() => {});
  if (s.invite) {
    const inviteBox = s.invite.origin || origin;
    try {
      const preview = await publicRequest(inviteBox, 'GET', `/api/v1/invites/${encodeURIComponent(s.invite.code)}`);
      const box = $('invite-preview');
      box.replaceChildren(
        el('p', { text: 'You are invited to join' }),
        el('strong', { text: preview.guild_name }),
        el('p', { class: 'muted', text: 'Sign in or create an account to join.' }),
        inviteBox === origin ? await elsewhereForm(s.invite) : null,
      );
      box.hidden = false;
    } catch (e) {
      $('invite-preview').hidden = false;
      $('invite-preview').textContent = `This invite does not work: ${e.message}`;
    }
  }
}

/** For an invite opened on the box that made it by someone whose account is on another
 *  box: opens the invite in their home's client, which joins with their identity. */
async function elsewhereForm(invite) {
  const wk = await publicRequest(origin, 'GET', '/.well-known/hearth').catch(() => ({}));
  const fp = invite.fingerprint || (wk.tls_fingerprint ? String(wk.tls_fingerprint).replace(/[^0-9a-fA-F]/g, '').toUpperCase() : '');
  const link = `${origin}/invite/${encodeURIComponent(invite.code)}${fp ? `#fp=${fp}` : ''}`;
  const input = el('input', { type: 'text', placeholder: 'https://hearth.local', required: '', 'aria-label': 'Your home box', dataset: { testid: 'elsewhere-home' } });
  return el('form', {
    class: 'elsewhere',
    dataset: { testid: 'invite-elsewhere' },
    onsubmit: (e) => {
      e.preventDefault();
      const text = input.value.trim();
      let home;
      try {
        home = new URL(/^https?:\/\//i.test(text) ? text : `https://${text}`).origin;
      } catch (err) {
        input.setCustomValidity('not a box address');
        input.reportValidity();
        return;
      }
      location.assign(`${home}/#join=${encodeURIComponent(link)}`);
    },
  }, el('label', {}, 'Your account is on another box? Its address:', input), el('button', { type: 'submit', dataset: { testid: 'elsewhere-open' } }, 'Open the invite there'));
}

/**
 * The signed-in page: the home box and every other box this browser uses, each reached
 * on its own, so a box that does not answer (the home included) leaves the others
 * working.
 */
export async function showApp() {
  $('auth').hidden = true;
  $('app').hidden = false;
  const home = homeBox();
  for (const saved of s.state.boxes || []) ensureBox(saved.origin, saved);
  try {
    s.me = await s.api.request('GET', '/api/v1/users/@me');
    s.state.me = { id: s.me.id, username: s.me.username, name: s.me.name };
    if (!s.state.home) s.state.home = (await publicRequest(homeOrigin(), 'GET', '/.well-known/hearth')).origin;
    await saveState();
  } catch (e) {
    if (!unreachable(e)) throw e;
    // The home is away: the profile it gave last time, and the other boxes go on.
    s.me = s.state.me || { id: s.state.userId, username: s.state.username, name: '' };
    setStatus(home, 'unreachable', '');
  }
  s.users.set(s.me.id, s.me);
  $('me-name').textContent = s.me.name || s.me.username;
  showConsoleEntry();
  $('me-name').title = s.identityNote || (s.state.identity ? 'identity key on this device' : 'no identity key on this device');
  $('me-name').dataset.identity = s.state.identity ? 'present' : 'absent';
  renderGuilds();
  await Promise.all([...s.boxes.values()].map((box) => connectBox(box).catch(() => false)));
  await loadDms();
  if (s.invite && s.invite.usedAtSignUp) {
    const { code } = s.invite;
    s.invite = null;
    if (location.pathname !== '/') history.replaceState(null, '', '/');
    await joinInvite(home, code).catch(() => {});
  } else if (s.invite) await offerInvite(s.invite);
}
