// Element helpers and rendering primitives: `$`, `el`, errors shown in place, the one
// dialog and its fields. Text always goes in with textContent, never as HTML.

import { ApiError } from './api.js';

export const $ = (id) => document.getElementById(id);

export function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (k === 'class') node.className = v;
    else if (k === 'text') node.textContent = v;
    else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(node.dataset, v);
    else node.setAttribute(k, v);
  }
  for (const c of children) if (c != null) node.append(c);
  return node;
}

export function showError(where, e) {
  const text = e instanceof ApiError ? e.message : String(e && e.message ? e.message : e);
  $(where).textContent = text;
}

export function dialog(title, content, onOk) {
  const d = $('dialog');
  $('dialog-title').textContent = title;
  $('dialog-body').replaceChildren(...content.filter((c) => c != null));
  $('dialog-error').textContent = '';
  $('dialog-ok').hidden = !onOk;
  $('dialog-ok').textContent = 'OK';
  $('dialog-cancel').textContent = onOk ? 'Cancel' : 'Close';
  d.onsubmitAction = onOk;
  // A dialog opened by another dialog's action (a preview after a pasted link) replaces
  // it: the action's end then leaves it open.
  d.replaced = true;
  if (!d.open) d.showModal();
  const first = d.querySelector('input, textarea, select');
  if (first) first.focus();
}

export function field(label, props) {
  const input = el('input', props);
  return [el('label', {}, label, input), input];
}
