// The administrators' console: one dialog whose sections are listed in SECTIONS, each a
// `render(container, api)` that fills its container through the home box's API (which
// checks every call's permission itself). The entry shows only for administrators.
//
// A section is one line of SECTIONS: [title, render]; render may be async. admin-users.js
// adds "Box" and "Users" the same way.

import { $, dialog, el, showError } from './dom.js';
import { s } from './state.js';
import { renderBoxSection, renderUsersSection } from './admin-users.js';
import { renderBackupsSection } from './admin-backups.js';

const when = (secs) => (secs ? new Date(secs * 1000).toLocaleString() : 'never');
const whenMs = (ms) => new Date(ms).toLocaleString();

/** Bytes as people read them. */
export function bytes(n) {
  if (n == null) return '?';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i += 1;
  }
  return `${v.toFixed(i && v < 10 ? 1 : 0)} ${units[i]}`;
}

function duration(secs) {
  const d = Math.floor(secs / 86400);
  const h = Math.floor((secs % 86400) / 3600);
  const m = Math.floor((secs % 3600) / 60);
  return d ? `${d} d ${h} h` : h ? `${h} h ${m} min` : `${m} min ${secs % 60} s`;
}

/** A fingerprint in groups, for reading out loud. */
const spaced = (fp) => (fp || '').replace(/[\s:]/g, '').match(/.{1,4}/g)?.join(' ') || '';

/** Rows of `label: value`, each value marked with a test id. */
function facts(rows) {
  return el('dl', { class: 'facts' }, ...rows.flatMap(([label, value, testid]) => [
    el('dt', { text: label }),
    el('dd', { dataset: testid ? { testid } : {}, text: String(value) }),
  ]));
}

function loading(container) {
  container.replaceChildren(el('p', { class: 'muted', text: 'Loading…' }));
}

function failed(container, what, e) {
  container.replaceChildren(el('p', { class: 'error', text: `${what}: ${e.message || e}` }));
}

// ---- Overview, storage, voice, TLS, log ----

/** Refreshes `render` every few seconds while `container` is shown in the open console. */
function refreshing(container, render, everyMs = 5000) {
  const shown = () => container.isConnected && $('dialog').open;
  const tick = async () => {
    if (!shown()) return;
    await render();
    if (shown()) setTimeout(tick, everyMs);
  };
  tick();
}

function renderOverview(container, api) {
  loading(container);
  refreshing(container, async () => {
    try {
      const st = await api.request('GET', '/api/v1/admin/status');
      const health = st.health || {};
      container.replaceChildren(
        facts([
          ['Box', `${st.name} (${st.origin})`],
          ['Health', health.status === 'ok' ? 'healthy' : `failing: ${(health.failing || []).join(', ')}`, 'admin-health'],
          ['Version', st.version, 'admin-version'],
          ['Up for', duration(st.uptime_secs)],
          ['Memory', bytes(st.memory.rss_bytes), 'admin-rss'],
          ['CPU time', `${st.cpu.user_secs.toFixed(1)} s user, ${st.cpu.system_secs.toFixed(1)} s system`],
          ['Load', st.cpu.load.map((l) => l.toFixed(2)).join(' ')],
          ['Connections', st.connections],
          ['Realtime sockets', st.gateway_sockets],
          ['Voice', `${st.voice.rooms} rooms, ${st.voice.participants} people`],
          ['Waiting calls to peers', st.outbox.waiting],
          ['Free space', `${bytes(st.storage.free_bytes)} of ${bytes(st.storage.total_bytes)}`],
        ]),
        el('h4', { text: 'This box\'s key fingerprint' }),
        el('p', { class: 'muted', text: 'Read this to the owner of a box that adds this one as a peer.' }),
        el('p', { class: 'fingerprint', dataset: { testid: 'admin-own-fingerprint' }, text: spaced(st.fingerprint) }),
      );
      container.dataset.loaded = 'true';
    } catch (e) {
      failed(container, 'The status cannot be read', e);
    }
  });
}

function renderStorage(container, api) {
  loading(container);
  api.request('GET', '/api/v1/admin/status').then((st) => {
    const used = st.storage.total_bytes - st.storage.free_bytes;
    container.replaceChildren(facts([
      ['Database', bytes(st.storage.database_bytes), 'admin-database-size'],
      ['Files', `${bytes(st.storage.files_bytes)}${st.storage.files_bytes_partial ? ' or more' : ''}`, 'admin-files-size'],
      ['Free on the card', bytes(st.storage.free_bytes), 'admin-free'],
      ['Used on the card', `${bytes(used)} of ${bytes(st.storage.total_bytes)}`],
      ['Check', st.health.disk.detail],
    ]));
  }).catch((e) => failed(container, 'Storage cannot be read', e));
}

function renderVoice(container, api) {
  loading(container);
  refreshing(container, async () => {
    try {
      const { rooms } = await api.request('GET', '/api/v1/admin/voice');
      const list = el('ul', { class: 'settings-list', dataset: { testid: 'admin-voice-rooms' } });
      list.replaceChildren(...rooms.map((room) => el('li', { dataset: { testid: 'admin-voice-room' } },
        el('span', { text: `#${room.channel_name || room.channel_id}` }),
        el('span', { class: 'muted', text: room.participants.map((p) => s.users.get(p.user_id)?.name || s.users.get(p.user_id)?.username || p.user_id.slice(0, 8)).join(', ') }))));
      if (!rooms.length) list.replaceChildren(el('li', { class: 'muted', text: 'No one is in a voice room.' }));
      container.replaceChildren(list);
    } catch (e) {
      failed(container, 'Voice rooms cannot be read', e);
    }
  });
}

function certFacts(cert, testid) {
  return facts([
    ['SHA-256', spaced(cert.fingerprint), testid],
    ['Names', cert.names.join(', ') || '(none)'],
    ['Valid until', when(cert.not_after)],
    ['Issuer', cert.issuer],
  ]);
}

async function readFile(input) {
  const file = input.files[0];
  if (!file) throw new Error('Choose a file.');
  if (file.size > 64 * 1024) throw new Error(`${file.name} is too large for a PEM file.`);
  return file.text();
}

function renderTls(container, api) {
  loading(container);
  api.request('GET', '/api/v1/admin/tls').then((tls) => {
    if (!tls.enabled) {
      container.replaceChildren(el('p', { class: 'muted', text: 'This box serves plain HTTP (TLS is off in its configuration).' }));
      return;
    }
    const parts = [el('h4', { text: 'Served now' })];
    if (tls.certificate) parts.push(certFacts(tls.certificate, 'admin-tls-fingerprint'));
    if (tls.pending) {
      parts.push(el('h4', { text: 'From the next start' }), certFacts(tls.pending, 'admin-tls-pending'),
        el('p', { class: 'muted', text: 'Restart the box to serve it. Browsers and peers that pinned the old certificate will ask to compare the new fingerprint.' }));
    }
    if (tls.upload_allowed) {
      const cert = el('input', { type: 'file', accept: '.pem,.crt,.cer', dataset: { testid: 'admin-tls-cert' } });
      const key = el('input', { type: 'file', accept: '.pem,.key', dataset: { testid: 'admin-tls-key' } });
      const error = el('p', { class: 'error' });
      const upload = el('button', {
        type: 'button',
        dataset: { testid: 'admin-tls-upload' },
        onclick: async (e) => {
          e.target.disabled = true;
          error.textContent = '';
          try {
            await api.request('PUT', '/api/v1/admin/tls', { certificate: await readFile(cert), key: await readFile(key) });
            renderTls(container, api);
          } catch (err) {
            error.textContent = err.message;
          } finally {
            e.target.disabled = false;
          }
        },
      }, 'Upload');
      parts.push(el('h4', { text: 'Use your own certificate' }),
        el('label', {}, 'Certificate chain (PEM, leaf first) ', cert),
        el('label', {}, 'Private key (PEM) ', key),
        upload, error);
    } else {
      parts.push(el('p', { class: 'muted', text: 'The certificate is set in the configuration file ([tls] cert_file).' }));
    }
    container.replaceChildren(...parts);
  }).catch((e) => failed(container, 'The certificate cannot be read', e));
}

function renderLog(container, api) {
  loading(container);
  api.request('GET', '/api/v1/admin/log?limit=100').then(({ records }) => {
    const list = el('ol', { class: 'log', dataset: { testid: 'admin-log' } }, ...records.map((r) => el('li', { class: r.level },
      el('span', { class: 'muted', text: `${whenMs(r.at_ms)} ${r.level} ` }),
      el('span', { text: r.message }))));
    container.replaceChildren(records.length ? list : el('p', { class: 'muted', text: 'No warnings or errors since the box started.' }));
  }).catch((e) => failed(container, 'The log cannot be read', e));
}

// ---- Peers, boxes on the LAN, ban notifications ----

function peerStatus(p) {
  if (p.reachable === true) return 'reachable';
  if (p.reachable === false) return `unreachable${p.last_error ? `: ${p.last_error}` : ''}`;
  return 'not contacted yet';
}

/** The comparison step: the fingerprint this box fetched, to be matched against what the
 *  other box's owner reads from their console; only a confirmed one is pinned. */
function compareStep(container, found, onPin, onCancel) {
  const error = el('p', { class: 'error' });
  container.replaceChildren(el('div', { class: 'compare', dataset: { testid: 'admin-peer-compare' } },
    el('p', { text: `${found.name || 'A box'} at ${found.origin} shows this key fingerprint:` }),
    el('p', { class: 'fingerprint big', dataset: { testid: 'admin-peer-found-fingerprint' }, text: spaced(found.fingerprint) }),
    el('p', { class: 'muted', text: 'Ask its owner to read the fingerprint on their console\'s overview. Pin it only if every group matches: a different one means you are not talking to their box.' }),
    el('div', { class: 'row' },
      el('button', {
        type: 'button',
        class: 'primary',
        dataset: { testid: 'admin-peer-confirm' },
        onclick: async (e) => {
          e.target.disabled = true;
          try {
            await onPin();
          } catch (err) {
            error.textContent = err.message;
            e.target.disabled = false;
          }
        },
      }, 'They match: pin it'),
      el('button', { type: 'button', dataset: { testid: 'admin-peer-cancel' }, onclick: onCancel }, 'They differ: cancel')),
    error));
}

function renderPeers(container, api) {
  const list = el('ul', { class: 'settings-list', dataset: { testid: 'admin-peers' } });
  const url = el('input', { type: 'url', placeholder: 'https://other-box.local', dataset: { testid: 'admin-peer-url' }, 'aria-label': 'Address of the box to add' });
  const step = el('div');
  const error = el('p', { class: 'error' });
  const load = async () => {
    try {
      const peers = await api.request('GET', '/api/v1/admin/peers');
      list.replaceChildren(...peers.map((p) => el('li', { class: 'peer', dataset: { testid: 'admin-peer', origin: p.origin, reachable: String(p.reachable) } },
        el('div', {},
          el('strong', { text: p.name || p.origin }), ' ',
          el('span', { class: 'muted', text: p.origin }),
          el('div', { class: 'muted', dataset: { testid: 'admin-peer-status' }, text: `${peerStatus(p)} · last contact ${when(p.last_contact)} · ${p.waiting_calls} waiting calls` }),
          el('div', { class: 'fingerprint', text: spaced(p.fingerprint) })),
        el('button', {
          type: 'button',
          class: 'danger',
          dataset: { testid: 'admin-peer-remove' },
          onclick: async (e) => {
            if (!window.confirm(`Remove ${p.origin}? Its users stop reaching this box.`)) return;
            e.target.disabled = true;
            try {
              await api.request('DELETE', `/api/v1/admin/peers?url=${encodeURIComponent(p.origin)}`);
              await load();
            } catch (err) {
              error.textContent = err.message;
              e.target.disabled = false;
            }
          },
        }, 'Remove'))));
      if (!peers.length) list.replaceChildren(el('li', { class: 'muted', text: 'No peers yet.' }));
    } catch (e) {
      error.textContent = `Peers cannot be listed: ${e.message}`;
    }
  };
  const fetchFingerprint = el('button', {
    type: 'button',
    dataset: { testid: 'admin-peer-fetch' },
    onclick: async (e) => {
      error.textContent = '';
      e.target.disabled = true;
      try {
        const found = await api.request('GET', `/api/v1/admin/peers/preview?url=${encodeURIComponent(url.value.trim())}`);
        compareStep(step, found, async () => {
          await api.request('POST', '/api/v1/admin/peers', { url: found.origin, fingerprint: found.fingerprint });
          step.replaceChildren();
          url.value = '';
          await load();
        }, () => step.replaceChildren());
      } catch (err) {
        error.textContent = err.message;
      } finally {
        e.target.disabled = false;
      }
    },
  }, 'Fetch its fingerprint');
  container.replaceChildren(list, el('h4', { text: 'Add a peer' }), el('div', { class: 'row' }, url, fetchFingerprint), step, error);
  load();
}

function renderDiscovered(container, api) {
  loading(container);
  const load = () => api.request('GET', '/api/v1/admin/discovered').then((d) => {
    const step = el('div');
    const list = el('ul', { class: 'settings-list', dataset: { testid: 'admin-discovered' } }, ...d.servers.map((found) => el('li', { class: 'peer', dataset: { testid: 'admin-discovered-box', origin: found.origin } },
      el('div', {},
        el('strong', { text: found.name || found.origin }), ' ',
        el('span', { class: 'muted', text: `${found.origin}${found.present ? '' : ' (gone quiet)'}${found.peer ? ' · a peer' : ''}` }),
        found.conflict ? el('div', { class: 'error', text: `Conflict: ${(found.conflicts || []).join('; ') || 'its announcement disagrees with what is pinned'}` }) : null,
        el('div', { class: 'fingerprint', text: spaced(found.fingerprint) })),
      found.peer || found.conflict ? null : el('button', {
        type: 'button',
        dataset: { testid: 'admin-discovered-pin' },
        onclick: () => compareStep(step, found, async () => {
          await api.request('POST', '/api/v1/admin/discovered', { origin: found.origin, fingerprint: found.fingerprint });
          await load();
        }, () => step.replaceChildren()),
      }, 'Compare and pin'))));
    if (!d.servers.length) list.replaceChildren(el('li', { class: 'muted', text: d.enabled ? 'No other box heard on the LAN yet.' : 'LAN discovery is off in this box\'s configuration.' }));
    container.replaceChildren(
      d.note ? el('p', { class: 'muted', text: d.note }) : '',
      list, step);
  }).catch((e) => failed(container, 'Boxes on the LAN cannot be listed', e));
  load();
}

function renderBans(container, api) {
  loading(container);
  api.request('GET', '/api/v1/admin/ban-notifications').then((notes) => {
    const list = el('ul', { class: 'settings-list', dataset: { testid: 'admin-bans' } }, ...notes.map((n) => el('li', {},
      el('span', { text: `${s.users.get(n.user_id)?.username || n.user_id.slice(0, 12)} banned from ${n.guild_name || n.guild_id} on ${n.host}${n.reason ? `: ${n.reason}` : ''}` }),
      el('span', { class: 'muted', text: when(n.received_at) }))));
    if (!notes.length) list.replaceChildren(el('li', { class: 'muted', text: 'No peer has told of a ban of a user of this box.' }));
    container.replaceChildren(list);
  }).catch((e) => failed(container, 'Ban notifications cannot be listed', e));
}

/** The console's sections, in order: [title, render(container, api)]. */
export const SECTIONS = [
  ['Overview', renderOverview],
  ['Box', renderBoxSection],
  ['Users', renderUsersSection],
  ['Peers', renderPeers],
  ['On the LAN', renderDiscovered],
  ['Ban notifications', renderBans],
  ['Storage', renderStorage],
  ['Backups', renderBackupsSection],
  ['Voice now', renderVoice],
  ['TLS', renderTls],
  ['Warnings', renderLog],
];

/** Opens the console on its first section. */
export function openConsole(sections = SECTIONS) {
  const body = el('div', { class: 'console-body', dataset: { testid: 'admin-section' } });
  const tabs = el('nav', { class: 'console-tabs', 'aria-label': 'Console sections' });
  const show = (index) => {
    const [title, render] = sections[index];
    for (const [i, tab] of [...tabs.children].entries()) tab.setAttribute('aria-current', String(i === index));
    const container = el('section', { dataset: { testid: 'admin-section-body', section: title } });
    body.replaceChildren(container);
    // A section may render at once or return a promise; either way its failure shows.
    Promise.resolve().then(() => render(container, s.api)).catch((e) => showError('dialog-error', e));
  };
  tabs.replaceChildren(...sections.map(([title], i) => el('button', {
    type: 'button',
    dataset: { testid: 'admin-tab', section: title },
    onclick: () => show(i),
  }, title)));
  dialog('Console', [tabs, body]);
  const d = $('dialog');
  d.classList.add('console');
  d.addEventListener('close', () => d.classList.remove('console'), { once: true });
  show(0);
}

/** Shows the console's entry to administrators of the home box only (the server refuses
 *  everyone else anyway). */
export function showConsoleEntry() {
  $('admin-open').hidden = !s.me?.is_admin;
}
