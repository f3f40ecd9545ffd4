// Hearth's web client: accounts, guilds, channels, messages, invites, realtime events.
// Everything the server sends is shown with textContent, never parsed as HTML.
//
// This is the boot file: it wires the page's controls and starts the session. The rest:
//   api.js            one box's API (DPoP-bound tokens, refresh, the home's token or the
//                     device-certificate grant at other boxes)
//   boxes.js          the boxes in use: the home and others, their status, certificates
//   gateway.js        the realtime WebSocket (tickets, resume, reconnect)
//   crypto.js         device and identity keys, DPoP proofs, key backups (WebCrypto)
//   store.js          what the browser keeps in IndexedDB (keys, session)
//   permissions.js    the permission bits, as the server defines them
//   dom.js            element helpers, the dialog
//   state.js          the client state and lookups over it
//   auth.js           accounts, sign-in, device linking, signing out
//   setup.js          "Set up this Hearth" on a fresh box, the password-reset page
//   admin-users.js    the admin console's box settings and accounts sections
//   settings.js       name, devices, push, moving the home
//   admin.js          the administrators' console (its sections)
//   guilds.js         guilds, channels, members, invites
//   voice-channel.js  joining voice channels and the voice bar (voice.js carries the call)
//   messages.js       messages, reactions, pins, uploads, typing indicators
//   realtime.js       gateway events applied to the state and the screen

import { publicRequest, unreachable } from './api.js';
import * as keys from './crypto.js';
import * as store from './store.js';
import { $, showError } from './dom.js';
import { boxOfGuild, origin, s } from './state.js';
import { authMode, cancelLink, newApi, showApp, showAuth, signIn, signUp, startLink } from './auth.js';
import { settings } from './settings.js';
import { openConsole } from './admin.js';
import { createChannel, createGuild, createInvite, joinDialog, parseInvite } from './guilds.js';
import { retryBoxes } from './boxes.js';
import { markGuildRead, visible } from './unread.js';
import { notificationDialog } from './notifications.js';
import { callDm, manageDm } from './dms.js';
import { loadMessages, renderMessages, send } from './messages.js';
import { typed } from './realtime.js';
import { registerServiceWorker } from './offline.js';
import { showReset, showSetup, wireSetup } from './setup.js';

function wire() {
  wireSetup();
  $('link-start').addEventListener('click', startLink);
  $('link-cancel').addEventListener('click', cancelLink);
  $('tab-signin').addEventListener('click', () => authMode(false));
  $('tab-signup').addEventListener('click', () => authMode(true));
  $('auth-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const username = $('auth-username').value.trim();
    const password = $('auth-password').value;
    $('auth-error').textContent = '';
    $('auth-submit').disabled = true;
    try {
      if ($('auth-form').dataset.mode === 'signup') await signUp(username, password, $('auth-display').value.trim());
      else await signIn(username, password);
      $('auth-password').value = '';
      $('auth-status').textContent = '';
      await showApp();
    } catch (err) {
      s.state = null;
      s.api = null;
      $('auth-status').textContent = '';
      showError('auth-error', err);
    } finally {
      $('auth-submit').disabled = false;
    }
  });
  $('composer').addEventListener('submit', (e) => { e.preventDefault(); send(); });
  $('composer-text').addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      send();
    }
  });
  $('composer-text').addEventListener('input', typed);
  $('load-older').addEventListener('click', async () => {
    const list = s.messages.get(s.channel) || [];
    const box = $('message-scroll');
    const before = box.scrollHeight;
    try {
      await loadMessages(s.channel, list[0]?.id || null);
    } catch (e) {
      showError('chat-error', e);
    }
    renderMessages();
    box.scrollTop = box.scrollHeight - before;
  });
  // Back from another tab (where a box's certificate may just have been accepted), or
  // back online: boxes that did not answer are tried again at once.
  window.addEventListener('focus', () => { if (s.api) retryBoxes(); });
  window.addEventListener('online', () => { if (s.api) retryBoxes(); });
  document.addEventListener('visibilitychange', visible);
  $('guild-read').addEventListener('click', () => markGuildRead(s.guild).catch((e) => showError('chat-error', e)));
  $('guild-notify').addEventListener('click', () => notificationDialog({
    scope: 'guild', id: s.guild, box: boxOfGuild(s.guild), title: s.guilds.get(s.guild)?.name || 'guild',
  }));
  $('channel-notify').addEventListener('click', () => notificationDialog({
    scope: 'channel',
    id: s.channel,
    box: boxOfGuild(s.channelGuild.get(s.channel)),
    title: s.dms?.has(s.channel) ? 'this conversation' : `#${s.guilds.get(s.guild)?.channels?.find((c) => c.id === s.channel)?.name || 'channel'}`,
  }));
  $('dm-manage').addEventListener('click', manageDm);
  $('dm-call').addEventListener('click', callDm);
  $('guild-add').addEventListener('click', createGuild);
  $('guild-join').addEventListener('click', joinDialog);
  $('channel-add').addEventListener('click', createChannel);
  $('invite-create').addEventListener('click', createInvite);
  $('invite-copy').addEventListener('click', () => navigator.clipboard?.writeText($('invite-link').value));
  $('settings-open').addEventListener('click', settings);
  $('admin-open').addEventListener('click', () => openConsole());
  $('reply-cancel').addEventListener('click', () => { s.replyTo = null; $('reply-bar').hidden = true; });
  $('nav-toggle').addEventListener('click', () => document.body.classList.toggle('nav-open'));
  $('dialog-cancel').addEventListener('click', () => $('dialog').close());
  $('dialog-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const action = $('dialog').onsubmitAction;
    if (!action) {
      $('dialog').close();
      return;
    }
    $('dialog-ok').disabled = true;
    try {
      $('dialog').replaced = false;
      await action();
      if (!$('dialog').replaced) $('dialog').close();
    } catch (err) {
      showError('dialog-error', err);
    } finally {
      $('dialog-ok').disabled = false;
    }
  });
}

async function start() {
  wire();
  registerServiceWorker();
  // An invite: this box's (/invite/CODE), or another box's handed over by that box's page
  // to the home's client (/#join=LINK).
  const m = location.pathname.match(/^\/invite\/([^/]+)$/);
  const join = new URLSearchParams(location.hash.slice(1)).get('join');
  if (m) s.invite = parseInvite(location.href);
  else if (join) {
    s.invite = parseInvite(join);
    history.replaceState(null, '', '/');
  }
  let wk = null;
  try {
    wk = await publicRequest(origin, 'GET', '/.well-known/hearth');
    $('server-name').textContent = wk.name;
    document.title = wk.name;
  } catch (e) {
    // The name stays "Hearth".
  }
  const reset = new URLSearchParams(location.hash.slice(1)).get('reset');
  if (reset) {
    await showReset(reset);
    return;
  }
  const unsupported = await keys.supported();
  if (unsupported) {
    await showAuth();
    $('auth-error').textContent = `Hearth cannot run here: ${unsupported}.`;
    $('auth-submit').disabled = true;
    return;
  }
  s.state = await store.loadState().catch(() => null);
  if (s.state && s.state.refreshToken) {
    s.api = newApi();
    try {
      await s.api.refresh();
      await showApp();
      return;
    } catch (e) {
      if (unreachable(e)) {
        // The home is away, not the session: go on with the other boxes.
        await showApp();
        return;
      }
      s.state = null;
      s.api = null;
    }
  }
  if (wk && wk.setup && !s.invite) {
    showSetup(wk);
    return;
  }
  await showAuth();
  document.body.dataset.ready = 'true';
}

start().then(() => { document.body.dataset.ready = 'true'; });
