// The boxes this client uses: the home (which served the page and holds the account) and
// every other box hosting a guild the user joined. Each box has its own Api (proofs with
// its own nonce; see api.js for how it is signed in at), its own gateway connection with
// resume, and a status shown in the sidebar:
//
//   connecting    being reached
//   online        its gateway is connected
//   unreachable   it does not answer (switched off, no network)
//   certificate   it does not answer and it likely is the browser refusing its
//                 self-signed certificate: the person is led through accepting it
//   mismatch      the certificate it presents (as it or the invite link says) differs
//                 from the one the home pinned: nothing is sent to it
//
// A page cannot see why a request to another origin failed (a refused certificate and a
// switched-off box look the same), so "certificate" is a judgement: the box was never
// reached from this browser, or the home reports it reachable.

import { Api, ApiError, publicRequest, unreachable } from './api.js';
import * as keys from './crypto.js';
import * as store from './store.js';
import { $, dialog, el } from './dom.js';
import { homeOrigin, s } from './state.js';
import { loadBoxGuilds, renderGuild, renderGuilds } from './guilds.js';
import { connectGateway } from './realtime.js';
import { markBoxRead } from './unread.js';
import { notificationDialog } from './notifications.js';

const RETRY_MS = 5000;
const PEERS_FRESH_MS = 30000;

export class Box {
  constructor(boxOrigin, api, saved) {
    this.origin = boxOrigin;
    this.isHome = boxOrigin === homeOrigin();
    this.api = api;
    this.name = saved?.name || new URL(boxOrigin).host;
    this.status = 'connecting';
    this.detail = '';
    this.guildOrder = [];
    this.loaded = false; // its guild list has been loaded
    this.gateway = null;
    this.linkFingerprint = saved?.fingerprint || null; // from the invite link
    this.pinned = null; // the home's pin of it
    this.presented = null; // what it says it presents (/.well-known/hearth)
    this.everReached = Boolean(saved?.everReached);
    this.kept = Boolean(saved?.origin); // remembered in this browser (joined, or from before)
    this.retryTimer = null;
  }

  get problem() {
    return ['unreachable', 'certificate', 'mismatch'].includes(this.status);
  }
}

/** Fingerprints compared and shown the same way: 64 hex digits, in pairs. */
export function normalizeFingerprint(text) {
  const hex = String(text || '').replace(/[^0-9a-fA-F]/g, '').toUpperCase();
  return hex.length === 64 ? hex : null;
}

export function showFingerprint(hex) {
  return hex ? hex.match(/../g).join(':') : 'unknown';
}

/** Origins compared after URL parsing (default ports, case). */
export function sameOrigin(a, b) {
  try {
    return new URL(a).origin === new URL(b).origin;
  } catch (e) {
    return false;
  }
}

export function isHome(boxOrigin) {
  return sameOrigin(boxOrigin, homeOrigin()) || Boolean(s.state?.home && sameOrigin(boxOrigin, s.state.home));
}

/** The home's canonical origin, which device certificates name. */
function homeName() {
  return s.state.home || homeOrigin();
}

let certificateCache = null;

/** The device certificate other boxes are shown: made with K_id when this browser holds
 *  it, else the one the linking device made for this browser. */
export async function deviceCertificate() {
  if (s.state.identity) {
    const key = `${s.state.jkt} ${homeName()}`;
    if (!certificateCache || certificateCache.key !== key) {
      certificateCache = { key, value: await keys.deviceCertificate(s.state.identity, s.state.jkt, homeName()) };
    }
    return certificateCache.value;
  }
  if (s.state.certificate) return s.state.certificate;
  throw new ApiError(403, 'no_certificate', 'This browser holds neither your identity key nor a device certificate, so other boxes cannot check who you are. Sign in with your password (if your key backup opens here) or link this browser from a device that holds your key.');
}

/** The home box (made when the session starts). */
export function homeBox() {
  const at = homeOrigin();
  let box = s.boxes.get(at);
  if (!box) {
    box = new Box(at, s.api, { name: s.state.homeName || $('server-name').textContent || null });
    s.boxes.set(at, box);
  }
  box.api = s.api;
  return box;
}

/** The box at `boxOrigin`, added (and remembered in this browser) if new. */
export function ensureBox(boxOrigin, saved) {
  const key = new URL(boxOrigin).origin;
  if (isHome(key)) return homeBox();
  let box = s.boxes.get(key);
  if (!box) {
    const api = new Api(key, s.state, s.api);
    api.certificate = deviceCertificate;
    box = new Box(key, api, saved);
    api.onFallback = (on) => {
      box.detail = on ? 'your home box is away: signed in here with this device\'s certificate' : '';
      renderGuilds();
    };
    s.boxes.set(key, box);
  }
  if (saved?.fingerprint && !box.linkFingerprint) box.linkFingerprint = normalizeFingerprint(saved.fingerprint);
  return box;
}

/** Keeps the list of other boxes in this browser, so a reload finds them again. */
export async function saveBoxes() {
  // A box only looked at (an invite previewed, not taken) is not remembered.
  for (const b of s.boxes.values()) if (b.guildOrder.length) b.kept = true;
  s.state.boxes = [...s.boxes.values()].filter((b) => !b.isHome && b.kept).map((b) => ({
    origin: b.origin,
    name: b.name,
    fingerprint: b.linkFingerprint,
    everReached: b.everReached,
  }));
  await store.saveState(s.state);
}

/** The boxes in sidebar order: the home first, then as they were added. */
export function orderedBoxes() {
  const home = s.boxes.get(homeOrigin());
  return [home, ...[...s.boxes.values()].filter((b) => b !== home)].filter(Boolean);
}

export function setStatus(box, status, detail) {
  box.status = status;
  if (detail !== undefined) box.detail = detail;
  if (box.isHome) {
    $('home-unreachable').hidden = status !== 'unreachable';
    if (status === 'online') for (const other of s.boxes.values()) if (!other.isHome) other.api.homeIsBack();
  }
  renderGuilds();
  // The DM list marks the DMs of a box that went away.
  if (s.guild === '@dms') renderGuild();
}

let peersCache = { at: 0, list: null };

/** What the home knows of its peers (pins, reachability), or null when it cannot say. */
async function homePeers() {
  if (Date.now() - peersCache.at < PEERS_FRESH_MS) return peersCache.list;
  let list = null;
  try {
    list = await s.api.request('GET', '/api/v1/peers');
  } catch (e) {
    list = null;
  }
  peersCache = { at: Date.now(), list };
  return list;
}

/**
 * Checks a box other than the home before anything is sent to it: the fingerprint the
 * home pinned against the invite link's and against what the box says it presents, and
 * whether it answers at all. Sets the box's status; returns true when it may be used.
 */
export async function checkBox(box) {
  const peers = await homePeers();
  const peer = peers?.find((p) => sameOrigin(p.origin, box.origin)) || null;
  box.pinned = peer ? normalizeFingerprint(peer.tls_fingerprint) : null;
  if (peer?.tls_mismatch) {
    setStatus(box, 'mismatch', 'your home box found that the certificate this box presents differs from the one it pinned');
    return false;
  }
  if (box.pinned && box.linkFingerprint && box.pinned !== box.linkFingerprint) {
    setStatus(box, 'mismatch', 'the invite link\'s certificate fingerprint differs from the one your home box pinned');
    return false;
  }
  let wk;
  try {
    wk = await publicRequest(box.origin, 'GET', '/.well-known/hearth');
  } catch (e) {
    if (!unreachable(e)) {
      setStatus(box, 'unreachable', e.message);
      return false;
    }
    const likelyCertificate = !box.everReached || peer?.reachable === true;
    setStatus(box, likelyCertificate ? 'certificate' : 'unreachable', '');
    return false;
  }
  box.name = wk.name || box.name;
  box.presented = normalizeFingerprint(wk.tls_fingerprint);
  const expected = box.pinned || box.linkFingerprint;
  if (expected && box.presented && expected !== box.presented) {
    setStatus(box, 'mismatch', box.pinned
      ? 'the certificate this box presents differs from the one your home box pinned'
      : 'the certificate this box presents differs from the one in the invite link');
    return false;
  }
  if (!box.everReached) {
    box.everReached = true;
    await saveBoxes().catch(() => {});
  }
  return true;
}

/** Reaches a box, loads its guilds and opens its gateway; retried while it is away. */
export async function connectBox(box) {
  clearTimeout(box.retryTimer);
  box.retryTimer = null;
  if (!box.isHome && !(await checkBox(box))) {
    if (box.status !== 'mismatch') retryLater(box);
    return false;
  }
  if (!box.loaded) {
    try {
      await loadBoxGuilds(box);
    } catch (e) {
      setStatus(box, 'unreachable', unreachable(e) ? '' : e.message);
      retryLater(box);
      return false;
    }
  }
  if (!box.gateway) connectGateway(box);
  return true;
}

function retryLater(box) {
  clearTimeout(box.retryTimer);
  box.retryTimer = setTimeout(() => connectBox(box), RETRY_MS);
}

/** Tries every box with a problem again now (the person may have just accepted a
 *  certificate in another tab). */
export function retryBoxes() {
  peersCache.at = 0;
  for (const box of s.boxes.values()) if (box.problem && box.status !== 'mismatch') connectBox(box);
}

/** Closes every box's connection (signing out). */
export function closeBoxes() {
  for (const box of s.boxes.values()) {
    clearTimeout(box.retryTimer);
    if (box.gateway) box.gateway.close();
    box.gateway = null;
  }
  s.boxes.clear();
  peersCache = { at: 0, list: null };
  certificateCache = null;
}

/** The warning shown instead of connecting to a box whose certificate differs. */
export function mismatchWarning(box) {
  return el('div', { class: 'box-warning', dataset: { testid: 'box-warning' } },
    el('p', { text: `Warning: ${box.detail}. Someone may be pretending to be ${box.name}, or its owner replaced its certificate. Nothing was sent to it.` }),
    el('p', { text: `Pinned by your home box: ${showFingerprint(box.pinned)}` }),
    box.linkFingerprint ? el('p', { text: `In the invite link: ${showFingerprint(box.linkFingerprint)}` }) : null,
    box.presented ? el('p', { text: `Presented by the box: ${showFingerprint(box.presented)}` }) : null,
    el('p', { class: 'muted', text: 'Ask the box\'s owner which fingerprint is right (hearth serve logs it at start). If the box really has a new certificate, your home box\'s owner must pin it again.' }));
}

/** What is wrong with a box and what to do about it. */
export function boxProblem(box) {
  const expected = box.pinned || box.linkFingerprint;
  if (box.status === 'mismatch') return mismatchWarning(box);
  if (box.status === 'certificate') {
    return el('div', { class: 'box-problem', dataset: { testid: 'box-problem' } },
      el('p', { text: `${box.name} does not answer. If you have not used it from this browser before, the browser has to accept its certificate first (a box on your network makes its own).` }),
      el('ol', {},
        el('li', {}, 'Open ', el('a', { href: `${box.origin}/.well-known/hearth`, target: '_blank', rel: 'noopener', dataset: { testid: 'box-open' } }, box.origin), ' in a new tab.'),
        el('li', { text: 'The browser warns that the connection is not private: open the certificate it shows and compare its SHA-256 fingerprint with this one:' }),
        el('li', { class: 'fingerprint', dataset: { testid: 'box-fingerprint' }, text: expected ? showFingerprint(expected) : 'no fingerprint known: ask the box\'s owner for it' }),
        el('li', { text: 'Only if they are the same, accept (Advanced → Proceed), close that tab and come back here.' })),
      el('p', { class: 'muted', text: expected === box.pinned && box.pinned ? 'The fingerprint is the one your home box pinned for it.' : 'The fingerprint is the one the invite link carries.' }));
  }
  if (box.status === 'unreachable') {
    return el('div', { class: 'box-problem', dataset: { testid: 'box-problem' } },
      el('p', { text: `${box.name} cannot be reached right now${box.detail ? `: ${box.detail}` : ''}. It is tried again every few seconds; everything on your other boxes keeps working.` }));
  }
  return null;
}

/** The box's details: name, address, fingerprints, status, and what to do. */
export function boxDialog(box) {
  dialog(box.name, [
    el('p', { class: 'muted', text: box.origin }),
    el('p', { dataset: { testid: 'box-state' }, text: `Status: ${box.status}${box.detail && !box.problem ? ` (${box.detail})` : ''}` }),
    boxProblem(box),
    !box.isHome && box.status !== 'certificate' && (box.pinned || box.presented) ? el('p', { class: 'muted', text: `Certificate: ${showFingerprint(box.presented || box.pinned)}` }) : null,
    box.status === 'online' ? el('button', {
      type: 'button',
      dataset: { testid: 'box-read' },
      onclick: async () => {
        await markBoxRead(box).catch((e) => { $('dialog-error').textContent = e.message; });
      },
    }, 'Mark everything here as read') : null,
    box.status === 'online' ? el('button', {
      type: 'button',
      dataset: { testid: 'box-notify' },
      onclick: () => notificationDialog({ scope: 'box', box, title: box.name }),
    }, '🔔 Notifications on this box') : null,
  ], box.problem && box.status !== 'mismatch' ? async () => {
    await connectBox(box);
    if (box.problem) throw new Error(`${box.name} still does not answer.`);
  } : null);
  if (box.problem && box.status !== 'mismatch') $('dialog-ok').textContent = 'Try again';
}
