// Settings: the display name, this account's devices (this one marked, others removed),
// push subscriptions and the push delegations each box holds, moving the home to another
// box, linking a new device, and signing out.

import { Api, CERT_GRANT, publicRequest } from './api.js';
import * as keys from './crypto.js';
import * as store from './store.js';
import { $, dialog, el, field, showError } from './dom.js';
import { homeOrigin, s } from './state.js';
import { sameOrigin } from './boxes.js';
import { approveLinkDialog, signOut } from './auth.js';
import { renderMessages } from './messages.js';
import { allowNotifications } from './unread.js';

const when = (secs) => new Date(secs * 1000).toLocaleString();

function devicesSection() {
  const list = el('ul', { class: 'settings-list', dataset: { testid: 'settings-devices' } }, el('li', { class: 'muted', text: 'Loading…' }));
  s.api.request('GET', '/api/v1/users/@me/devices').then((devices) => {
    list.replaceChildren(...devices.map((d) => el('li', { dataset: { testid: 'device', id: d.id, current: String(Boolean(d.current)) } },
      el('span', { text: `${d.name || 'A device'}${d.current ? ' (this browser)' : ''}` }),
      d.current ? null : el('button', {
        type: 'button',
        dataset: { testid: 'device-remove' },
        onclick: async (e) => {
          e.target.disabled = true;
          try {
            await s.api.request('DELETE', `/api/v1/users/@me/devices/${encodeURIComponent(d.id)}`);
            e.target.closest('li').remove();
          } catch (err) {
            e.target.disabled = false;
            showError('dialog-error', err);
          }
        },
      }, 'Remove'))));
  }).catch((e) => list.replaceChildren(el('li', { class: 'error', text: `Devices cannot be listed: ${e.message}` })));
  return [el('h4', { text: 'Devices' }), list];
}

const hostOf = (url) => {
  try {
    return new URL(url).host;
  } catch {
    return url;
  }
};

const b64uBytes = (text) => Uint8Array.from(atob(text.replace(/-/g, '+').replace(/_/g, '/')), (c) => c.charCodeAt(0));

const pushSupported = () => window.isSecureContext && 'serviceWorker' in navigator && 'PushManager' in window && 'Notification' in window;

// This browser's push subscription, if it has one.
async function browserSubscription() {
  if (!pushSupported()) return null;
  const registration = await navigator.serviceWorker.getRegistration('/');
  return registration ? registration.pushManager.getSubscription() : null;
}

// Subscribes this browser with the home box's VAPID key (a subscription made for another
// key is replaced) and returns it as the server stores it.
async function subscribeBrowser() {
  if (Notification.permission !== 'granted' && (await Notification.requestPermission()) !== 'granted') {
    throw new Error('Notifications are not allowed for this site in this browser.');
  }
  const wk = await publicRequest(homeOrigin(), 'GET', '/.well-known/hearth');
  if (!wk.vapid_public_key) throw new Error('Your home box does not publish a push key.');
  const key = b64uBytes(wk.vapid_public_key);
  const registration = await navigator.serviceWorker.ready;
  let sub = await registration.pushManager.getSubscription();
  const bound = sub?.options?.applicationServerKey ? new Uint8Array(sub.options.applicationServerKey) : null;
  if (sub && !(bound && bound.length === key.length && bound.every((b, i) => b === key[i]))) {
    await sub.unsubscribe();
    sub = null;
  }
  sub = sub || (await registration.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: key }));
  const json = sub.toJSON();
  return { endpoint: json.endpoint, keys: { p256dh: json.keys.p256dh, auth: json.keys.auth } };
}

function pushSection() {
  const list = el('ul', { class: 'settings-list', dataset: { testid: 'push-subscriptions' } });
  const subs = [...(s.me?.push_subscriptions || [])];
  // A subscription stored before push was encrypted has no keys and is never used; a
  // change writes only those with keys.
  const save = async (next) => {
    const me = await s.api.request('PATCH', '/api/v1/users/@me', { push_subscriptions: next.filter((x) => x.keys) });
    s.me = { ...s.me, ...me };
    subs.splice(0, subs.length, ...(me.push_subscriptions || []));
    render();
  };
  const remove = async (sub) => {
    await save(subs.filter((x) => x.endpoint !== sub.endpoint));
    // This browser's own subscription is ended at its push service too.
    const mine = await browserSubscription().catch(() => null);
    if (mine && mine.endpoint === sub.endpoint) await mine.unsubscribe().catch(() => {});
  };
  const render = () => {
    list.replaceChildren(...subs.map((sub) => el('li', { dataset: { testid: 'push-subscription', host: hostOf(sub.endpoint) } },
      el('span', { class: 'fingerprint', title: sub.endpoint, text: sub.keys ? hostOf(sub.endpoint) : `${hostOf(sub.endpoint)} (no keys: never used; subscribe again there)` }),
      el('button', {
        type: 'button',
        dataset: { testid: 'push-remove' },
        onclick: () => remove(sub).catch((e) => showError('dialog-error', e)),
      }, 'Remove'))));
    if (!subs.length) list.replaceChildren(el('li', { class: 'muted', text: 'No push subscription: mentions reach you only while a client is open.' }));
  };
  render();
  const supported = pushSupported();
  const subscribe = el('button', {
    type: 'button',
    dataset: { testid: 'push-subscribe' },
    onclick: async (e) => {
      e.target.disabled = true;
      try {
        const sub = await subscribeBrowser();
        await save([...subs.filter((x) => x.endpoint !== sub.endpoint), sub]);
      } catch (err) {
        showError('dialog-error', err);
      } finally {
        e.target.disabled = false;
      }
    },
  }, 'Get notifications in this browser');
  subscribe.disabled = !supported;
  const state = el('span', { class: 'muted', dataset: { testid: 'notifications-permission' }, text: typeof Notification === 'undefined' ? 'not available in this browser' : Notification.permission });
  const allow = typeof Notification === 'undefined' ? null : el('button', {
    type: 'button',
    dataset: { testid: 'notifications-allow' },
    onclick: async () => { state.textContent = await allowNotifications(); },
  }, 'Show mentions as notifications while this tab is in the background');
  return [
    el('h4', { text: 'Push notifications' }),
    el('p', { class: 'muted', text: 'Where your home box pushes mentions, encrypted for each device: this browser, or a UnifiedPush distributor an app registered.' }),
    list,
    el('div', { class: 'row' }, subscribe),
    el('div', { class: 'row' }, allow, state),
    supported ? null : el('p', { class: 'muted', text: 'This browser cannot receive push notifications here (it needs a secure connection and push support).' }),
  ];
}

function delegationsSection() {
  const list = el('ul', { class: 'settings-list', dataset: { testid: 'delegations' } });
  const load = () => s.api.request('GET', '/api/v1/users/@me/push-delegations').then((rows) => {
    list.replaceChildren(...rows.map((d) => {
      const revoked = Boolean(d.revoked_at);
      const act = async (method) => {
        try {
          await s.api.request(method, `/api/v1/users/@me/push-delegations?host=${encodeURIComponent(d.host)}`);
          await load();
        } catch (e) {
          showError('dialog-error', e);
        }
      };
      return el('li', { dataset: { testid: 'delegation', host: d.host, revoked: String(revoked) } },
        el('span', { text: revoked ? `${d.host}: revoked ${when(d.revoked_at)}` : `${d.host}: ${d.tokens} token${d.tokens === 1 ? '' : 's'}, until ${when(d.expires_at)}` }),
        el('button', { type: 'button', dataset: { testid: revoked ? 'delegation-allow' : 'delegation-revoke' }, onclick: () => act(revoked ? 'PUT' : 'DELETE') }, revoked ? 'Allow again' : 'Revoke'));
    }));
    if (!rows.length) list.replaceChildren(el('li', { class: 'muted', text: 'No box may push to you yet.' }));
  }).catch((e) => list.replaceChildren(el('li', { class: 'error', text: `Cannot be listed: ${e.message}` })));
  load();
  return [el('h4', { text: 'Boxes that may push to you' }), el('p', { class: 'muted', text: 'Each box hosting your guilds holds a delegation from your home to send you notifications through it. Revoke one and that box pushes nothing until you allow it again.' }), list];
}

function dmSection() {
  const policy = el('select', { 'aria-label': 'Who may message me', dataset: { testid: 'dm-policy' } },
    el('option', { value: 'everyone', text: 'Everyone' }),
    el('option', { value: 'shared_guild', text: 'People who share a guild with me' }),
    el('option', { value: 'nobody', text: 'Nobody' }));
  policy.disabled = true;
  s.api.request('GET', '/api/v1/users/@me/dm-settings').then((answer) => {
    policy.value = answer.dm_policy || 'everyone';
    policy.disabled = false;
  }).catch(() => {});
  policy.addEventListener('change', () => {
    s.api.request('PATCH', '/api/v1/users/@me/dm-settings', { dm_policy: policy.value })
      .catch((e) => showError('dialog-error', e));
  });
  return [el('h4', { text: 'Direct messages' }), el('label', {}, 'Who may message me', policy)];
}

function homeSection() {
  const others = [...s.boxes.values()].filter((b) => !b.isHome && b.status === 'online');
  const current = el('p', { dataset: { testid: 'home-origin' }, text: `Your home box: ${s.state.home || homeOrigin()}` });
  if (!others.length) return [el('h4', { text: 'Home box' }), current, el('p', { class: 'muted', text: 'To move your home, first join a guild on the box you want to move to.' })];
  const select = el('select', { 'aria-label': 'New home box', dataset: { testid: 'move-home-select' } },
    ...others.map((b) => el('option', { value: b.origin, text: `${b.name} (${b.origin})` })));
  const move = el('button', {
    type: 'button',
    dataset: { testid: 'move-home' },
    onclick: () => confirmMove(s.boxes.get(select.value)),
  }, 'Move my home…');
  return [el('h4', { text: 'Home box' }), current, el('div', { class: 'row' }, select, move)];
}

function confirmMove(box) {
  if (!box) return;
  if (!s.state.identity) {
    dialog('Move your home', [el('p', { text: 'Moving your home needs your identity key, which this browser does not hold. Move it from a device that does (one where you signed in with your password and key backup).' })], null);
    return;
  }
  dialog(`Move your home to ${box.name}?`, [
    el('p', { text: `${box.origin} becomes your home box: it signs you in, keeps your devices and tells your other boxes who you are. Your user id, your guilds and your messages stay.` }),
    el('p', { text: `Your current home (${s.state.home || homeOrigin()}) is told, and stops signing you in. Other devices have to sign in again, at the new home.` }),
    el('p', { class: 'muted', text: 'Your identity key signs the move in this browser; it is not sent anywhere.' }),
  ], () => moveHome(box));
  $('dialog-ok').textContent = 'Move my home';
  $('dialog-ok').dataset.testid = 'dialog-ok';
}

/** mzchat's migration: sign in at the new home with this device's certificate for it and
 *  K_id's proof; the new home tells the old one. Then this browser's home is the new box. */
async function moveHome(box) {
  const wk = await publicRequest(box.origin, 'GET', '/.well-known/hearth');
  const newHome = wk.origin;
  const timestamp = Math.floor(Date.now() / 1000);
  const oldHome = s.state.home || homeOrigin();
  const api = new Api(box.origin, s.state);
  const grant = await api.grant({
    grant_type: CERT_GRANT,
    device_certificate: await keys.deviceCertificate(s.state.identity, s.state.jkt, newHome),
    migration_new_homeserver: newHome,
    migration_timestamp: String(timestamp),
    migration_signature: await keys.migrationSignature(s.state.identity, newHome, timestamp),
    migration_targets: oldHome,
  });
  const oldAt = homeOrigin();
  const oldBox = s.boxes.get(oldAt);
  s.state.refreshToken = grant.refresh_token;
  s.state.userId = grant.user_id;
  s.state.home = newHome;
  s.state.homeAt = box.origin;
  s.state.homeName = box.name;
  s.state.boxes = (s.state.boxes || []).filter((b) => !sameOrigin(b.origin, box.origin))
    .concat([{ origin: oldAt, name: oldBox?.name || new URL(oldAt).host, everReached: true }]);
  await store.saveState(s.state);
  // Every box is reached anew, the new home first.
  location.reload();
}

export function settings() {
  const [row, name] = field('Display name', { maxlength: '64', dataset: { testid: 'settings-name' } });
  name.value = s.me?.name || '';
  const link = s.state.identity ? el('button', {
    type: 'button',
    dataset: { testid: 'link-approve' },
    onclick: () => { $('dialog').close(); approveLinkDialog(); },
  }, 'Link a new device') : null;
  const out = el('button', { type: 'button', class: 'danger', dataset: { testid: 'sign-out' }, onclick: () => { $('dialog').close(); signOut(); } }, 'Sign out of this browser');
  const identity = el('p', { class: 'muted', dataset: { testid: 'identity-status' }, text: s.state.identity ? 'Your identity key is on this device.' : `No identity key on this device. ${s.identityNote}` });
  dialog('Settings', [row, ...devicesSection(), identity, link, ...dmSection(), ...pushSection(), ...delegationsSection(), ...homeSection(), el('hr'), out], async () => {
    s.me = { ...s.me, ...(await s.api.request('PATCH', '/api/v1/users/@me', { name: name.value })) };
    s.users.set(s.me.id, s.me);
    $('me-name').textContent = s.me.name || s.me.username;
    renderMessages();
  });
}
