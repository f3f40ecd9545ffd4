// The admin console's sections about the box itself and its accounts. Each renders into
// the element it is given and talks to the box through the home `Api` it is given, so
// the console shell (admin.js) places them where it likes:
//
//   renderBoxSection(container, api)    name, description, icon, who may register
//   renderUsersSection(container, api)  accounts: search, make, make administrator,
//                                       disable, delete, hand out a password-reset link
//
// Every action goes through `/api/v1/admin/…`, which checks the caller administers the
// box; refusals (the last administrator, say) are shown where the action was taken.

import * as keys from './crypto.js';
import { el } from './dom.js';

/** Largest icon the box takes, bytes (as `service::setup::MAX_ICON_BYTES`). */
const MAX_ICON_BYTES = 32 * 1024;
const PAGE = 50;

const when = (secs) => new Date(secs * 1000).toLocaleString();

function errorLine(testid) {
  return el('p', { class: 'error', role: 'alert', dataset: { testid } });
}

function showIn(line, e) {
  line.textContent = e && e.message ? e.message : String(e || '');
}

function readAsDataUrl(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

/** The box's name, description, icon and registration mode. */
export async function renderBoxSection(container, api) {
  const error = errorLine('box-settings-error');
  const saved = el('p', { class: 'muted', 'aria-live': 'polite', dataset: { testid: 'box-settings-saved' } });
  const name = el('input', { maxlength: '100', required: '', dataset: { testid: 'box-settings-name' } });
  const description = el('textarea', { maxlength: '1000', rows: '3', dataset: { testid: 'box-settings-description' } });
  const registration = el('select', { dataset: { testid: 'box-settings-registration' } },
    el('option', { value: 'open' }, 'Anyone who can reach the box'),
    el('option', { value: 'invite' }, 'People with an invite'),
    el('option', { value: 'closed' }, 'Only administrators make accounts'));
  const preview = el('img', { alt: 'The box\'s icon', width: '48', height: '48', hidden: '' });
  const iconInput = el('input', { type: 'file', accept: 'image/png,image/jpeg,image/webp,image/gif', dataset: { testid: 'box-settings-icon' } });
  // undefined: unchanged; null: removed; a data URL: the new icon.
  let icon;
  iconInput.addEventListener('change', async () => {
    const file = iconInput.files[0];
    if (!file) return;
    if (file.size > MAX_ICON_BYTES) {
      error.textContent = `The icon must be at most ${MAX_ICON_BYTES / 1024} KiB.`;
      iconInput.value = '';
      return;
    }
    icon = await readAsDataUrl(file);
    preview.src = icon;
    preview.hidden = false;
  });
  const removeIcon = el('button', {
    type: 'button',
    onclick: () => {
      icon = null;
      preview.hidden = true;
      preview.removeAttribute('src');
    },
  }, 'Remove icon');
  const form = el('form', {
    dataset: { testid: 'box-settings-form' },
    onsubmit: async (e) => {
      e.preventDefault();
      error.textContent = '';
      saved.textContent = '';
      const body = { name: name.value.trim(), description: description.value, registration: registration.value };
      if (icon !== undefined) body.icon = icon;
      try {
        fill(await api.request('PATCH', '/api/v1/admin/settings', body));
        icon = undefined;
        saved.textContent = 'Saved.';
      } catch (err) {
        showIn(error, err);
      }
    },
  },
  el('label', {}, 'Name', name),
  el('label', {}, 'Description', description),
  el('label', {}, 'Who may create accounts', registration),
  el('label', {}, 'Icon (PNG, JPEG, WebP or GIF, at most 32 KiB)', iconInput),
  el('div', {}, preview, removeIcon),
  el('button', { type: 'submit', class: 'primary', dataset: { testid: 'box-settings-save' } }, 'Save'),
  saved, error);

  function fill(settings) {
    name.value = settings.name || '';
    description.value = settings.description || '';
    registration.value = settings.registration;
    if (settings.icon) {
      preview.src = settings.icon;
      preview.hidden = false;
    } else {
      preview.hidden = true;
    }
  }

  container.replaceChildren(el('h4', { text: 'This box' }), form);
  try {
    fill(await api.request('GET', '/api/v1/admin/settings'));
  } catch (err) {
    showIn(error, err);
  }
}

/** Accounts: a search, pages of users with their actions, and a form to make one. */
export async function renderUsersSection(container, api) {
  const error = errorLine('users-error');
  const rows = el('tbody', { dataset: { testid: 'users' } });
  const more = el('button', { type: 'button', hidden: '', dataset: { testid: 'users-more' } }, 'More');
  const search = el('input', { type: 'search', placeholder: 'Search by name', maxlength: '64', 'aria-label': 'Search accounts', dataset: { testid: 'users-search' } });
  const resetBox = el('div', { class: 'invite-box', hidden: '', dataset: { testid: 'reset-link-box' } });
  let next = null;

  async function load(append) {
    error.textContent = '';
    const params = new URLSearchParams({ limit: String(PAGE) });
    if (search.value.trim()) params.set('q', search.value.trim());
    if (append && next) params.set('after', next);
    try {
      const page = await api.request('GET', `/api/v1/admin/users?${params}`);
      if (!append) rows.replaceChildren();
      rows.append(...page.users.map(row));
      next = page.next || null;
      more.hidden = !next;
    } catch (err) {
      showIn(error, err);
    }
  }

  async function act(action) {
    error.textContent = '';
    try {
      await action();
    } catch (err) {
      showIn(error, err);
    }
  }

  function row(user) {
    const tr = el('tr', { dataset: { testid: 'user', username: user.username, id: user.id } });
    const patch = (change) => act(async () => {
      const updated = await api.request('PATCH', `/api/v1/admin/users/${encodeURIComponent(user.id)}`, change);
      tr.replaceWith(row(updated));
    });
    tr.append(
      el('td', {}, el('strong', { text: user.username }), el('br'), el('span', { class: 'muted', text: user.display_name })),
      el('td', { text: [user.admin ? 'administrator' : '', user.disabled ? 'disabled' : ''].filter(Boolean).join(', ') }),
      el('td', { class: 'muted', text: when(user.created_at) }),
      el('td', {},
        el('button', { type: 'button', dataset: { testid: 'user-admin' }, onclick: () => patch({ admin: !user.admin }) },
          user.admin ? 'Remove administrator' : 'Make administrator'),
        el('button', { type: 'button', dataset: { testid: 'user-disable' }, onclick: () => patch({ disabled: !user.disabled }) },
          user.disabled ? 'Enable' : 'Disable'),
        el('button', {
          type: 'button',
          dataset: { testid: 'user-reset' },
          onclick: () => act(async () => {
            const link = await api.request('POST', `/api/v1/admin/users/${encodeURIComponent(user.id)}/reset-link`, {});
            const input = el('input', { readonly: '', value: link.url, 'aria-label': 'Reset link', dataset: { testid: 'reset-link' } });
            resetBox.replaceChildren(
              el('p', { text: `A one-time link for ${user.username} to set a new password, until ${when(link.expires_at)}. Give it to them privately:` }),
              input,
              el('button', { type: 'button', onclick: () => navigator.clipboard?.writeText(link.url) }, 'Copy'));
            resetBox.hidden = false;
          }),
        }, 'Reset link'),
        el('button', {
          type: 'button',
          dataset: { testid: 'user-delete' },
          onclick: () => {
            if (!window.confirm(`Delete the account ${user.username}? Their messages stay.`)) return;
            act(async () => {
              await api.request('DELETE', `/api/v1/admin/users/${encodeURIComponent(user.id)}`);
              tr.remove();
            });
          },
        }, 'Delete')),
    );
    return tr;
  }

  const newName = el('input', { maxlength: '32', required: '', autocomplete: 'off', dataset: { testid: 'new-user-name' } });
  const newPassword = el('input', { type: 'password', minlength: '8', required: '', autocomplete: 'new-password', dataset: { testid: 'new-user-password' } });
  const newAdmin = el('input', { type: 'checkbox', dataset: { testid: 'new-user-admin' } });
  const create = el('form', {
    dataset: { testid: 'new-user-form' },
    onsubmit: (e) => {
      e.preventDefault();
      act(async () => {
        // The person's identity key is made here and kept only wrapped under the password
        // they are given, as on sign-up: the box never sees it.
        const identity = await keys.newIdentityKey();
        const made = await api.request('POST', '/api/v1/admin/users', {
          username: newName.value.trim(),
          password: newPassword.value,
          identity_key: await keys.userIdOf(identity),
          key_backup: await keys.wrapIdentity(identity, newPassword.value),
          admin: newAdmin.checked,
        });
        newName.value = '';
        newPassword.value = '';
        newAdmin.checked = false;
        rows.prepend(row(made));
      });
    },
  },
  el('h4', { text: 'Make an account' }),
  el('label', {}, 'Username', newName),
  el('label', {}, 'Password (tell it to them; they can change it with a reset link)', newPassword),
  el('label', { class: 'check' }, newAdmin, 'Administrator'),
  el('button', { type: 'submit', class: 'primary', dataset: { testid: 'new-user-submit' } }, 'Make the account'));

  let typing;
  search.addEventListener('input', () => {
    clearTimeout(typing);
    typing = setTimeout(() => load(false), 250);
  });
  more.addEventListener('click', () => load(true));
  container.replaceChildren(
    el('h4', { text: 'Accounts' }),
    search,
    el('table', { class: 'admin-table' },
      el('thead', {}, el('tr', {}, el('th', { text: 'Account' }), el('th', { text: 'Role' }), el('th', { text: 'Made' }), el('th', { text: '' }))),
      rows),
    more, resetBox, error, create);
  await load(false);
}
