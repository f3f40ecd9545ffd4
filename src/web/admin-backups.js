// The console's Backups section: the archives kept on the box (made on a schedule or
// now), each downloadable, and a restore uploaded from this computer, which the box
// checks completely and applies at its next start.
//
// Every call goes through the home box's API, which refuses anyone but an administrator.

import { el, showError } from './dom.js';
import { bytes } from './admin.js';

const when = (secs) => new Date(secs * 1000).toLocaleString();

/** Saves `blob` as a file named `name` through the browser's own download. */
function save(blob, name) {
  const url = URL.createObjectURL(blob);
  const a = el('a', { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
}

function restoreFacts(restore) {
  return el('dl', { class: 'facts' },
    el('dt', { text: 'From box' }), el('dd', { text: restore.box_name }),
    el('dt', { text: 'Made' }), el('dd', { text: when(restore.created_at) }),
    el('dt', { text: 'Hearth' }), el('dd', { text: `${restore.hearth_version} (schema ${restore.schema_version})` }),
    el('dt', { text: 'Size' }), el('dd', { text: `${bytes(restore.bytes)} in ${restore.members} files` }),
  );
}

export function renderBackupsSection(container, api) {
  const list = el('ul', { class: 'plain', dataset: { testid: 'backup-list' } });
  const status = el('p', { class: 'muted' });
  const error = el('p', { class: 'error', id: 'backup-error' });
  const staged = el('div', { dataset: { testid: 'restore-staged' } });

  const load = async () => {
    error.textContent = '';
    try {
      const kept = await api.request('GET', '/api/v1/admin/backups');
      list.replaceChildren(...kept.map((b) => el('li', { dataset: { testid: 'backup', name: b.name } },
        el('span', { text: `${when(b.created_at)} · ${bytes(b.size)} ` }),
        el('button', {
          type: 'button',
          dataset: { testid: 'backup-download' },
          onclick: async (e) => {
            e.target.disabled = true;
            try {
              save(await api.fetchBlob(`/api/v1/admin/backups/${encodeURIComponent(b.name)}`), b.name);
            } catch (err) {
              showError('backup-error', err);
            } finally {
              e.target.disabled = false;
            }
          },
        }, 'Download'))));
      if (!kept.length) list.replaceChildren(el('li', { class: 'muted', text: 'No backup kept on this box yet.' }));
    } catch (e) {
      showError('backup-error', e);
    }
    await loadStaged();
  };

  const loadStaged = async () => {
    try {
      const { restore } = await api.request('GET', '/api/v1/admin/restore');
      staged.replaceChildren(
        el('p', { text: 'A restore is waiting: it replaces everything on this box at its next start.' }),
        restoreFacts(restore),
        el('button', {
          type: 'button',
          dataset: { testid: 'restore-cancel' },
          onclick: async () => {
            try {
              await api.request('DELETE', '/api/v1/admin/restore');
              staged.replaceChildren();
            } catch (err) {
              showError('backup-error', err);
            }
          },
        }, 'Cancel the restore'));
    } catch (e) {
      if (e.status === 404) staged.replaceChildren();
      else showError('backup-error', e);
    }
  };

  const now = el('button', {
    type: 'button',
    dataset: { testid: 'backup-now' },
    onclick: async () => {
      now.disabled = true;
      status.textContent = 'Backing up…';
      try {
        const made = await api.request('POST', '/api/v1/admin/backups');
        status.textContent = `Made ${made.name} (${bytes(made.size)}).`;
        await load();
      } catch (e) {
        status.textContent = '';
        showError('backup-error', e);
      } finally {
        now.disabled = false;
      }
    },
  }, 'Back up now');

  const file = el('input', { type: 'file', accept: '.gz,.tar.gz,application/gzip', dataset: { testid: 'restore-file' } });
  const upload = el('button', {
    type: 'button',
    dataset: { testid: 'restore-upload' },
    onclick: async () => {
      const chosen = file.files[0];
      if (!chosen) {
        error.textContent = 'Choose a backup archive first.';
        return;
      }
      upload.disabled = true;
      status.textContent = 'Uploading and checking…';
      try {
        await api.upload('/api/v1/admin/restore', chosen, 'application/gzip');
        status.textContent = '';
        await loadStaged();
      } catch (e) {
        status.textContent = '';
        showError('backup-error', e);
      } finally {
        upload.disabled = false;
      }
    },
  }, 'Restore at next start');

  container.replaceChildren(
    el('p', { text: 'A backup holds the database, the files, the keys, the TLS certificate and the configuration. Keep a copy off the box.' }),
    now, status, list,
    el('h3', { text: 'Restore' }),
    el('p', { class: 'muted', text: 'The archive is checked before anything changes; the box applies it when it next starts, replacing what it holds now.' }),
    file, upload, staged, error,
  );
  load();
}
