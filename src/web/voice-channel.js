// Voice channels in the page: who is in one, joining and leaving it (voice.js carries the
// call), and the voice bar with mute, deafen and leave.

import { $, dialog, el } from './dom.js';
import { apiForChannel, ensureUser, nameOf, s } from './state.js';

export async function showVoice(channel) {
  let people = [];
  try {
    people = await apiForChannel(channel.id).request('GET', `/api/v1/channels/${channel.id}/voice`);
  } catch (e) {
    people = [];
  }
  for (const p of people) await ensureUser(p.user_id, s.guild);
  const names = people.map((p) => nameOf(p.user_id, s.guild));
  const here = s.voice && s.voice.channel === channel.id;
  dialog(`🔊 ${channel.name}`, [
    el('p', { text: names.length ? `In this voice channel: ${names.join(', ')}` : 'Nobody is in this voice channel.' }),
  ], here ? null : () => joinVoiceChannel(channel));
  $('dialog-ok').textContent = 'Join voice';
}

async function joinVoiceChannel(channel) {
  const { joinVoice } = await import('./voice.js');
  if (s.voice) await leaveVoice();
  const guild = s.guild;
  const call = await joinVoice({
    ticketUrl: async () => (await apiForChannel(channel.id).request('POST', `/api/v1/channels/${channel.id}/voice`, {})).url,
    onEvent: (e) => {
      if (e.type === 'closed' && s.voice && s.voice.call === call) {
        s.voice = null;
        renderVoice(e.code === 1000 ? '' : `Voice ended: ${e.reason || e.code}`);
      }
    },
  });
  s.voice = { call, channel: channel.id, guild, name: channel.name, muted: false, deafened: false };
  renderVoice('');
}

export async function leaveVoice() {
  const v = s.voice;
  s.voice = null;
  if (v) await v.call.leave();
  renderVoice('');
}

function renderVoice(message) {
  const bar = $('voice-bar');
  if (!s.voice) {
    bar.hidden = !message;
    bar.replaceChildren(message ? el('span', { class: 'muted', text: message }) : '');
    return;
  }
  const v = s.voice;
  bar.hidden = false;
  bar.replaceChildren(
    el('span', { class: 'voice-name', dataset: { testid: 'voice-connected' }, text: `🔊 ${v.name}` }),
    el('button', {
      'aria-pressed': String(v.muted),
      dataset: { testid: 'voice-mute' },
      onclick: () => { v.muted = !v.muted; v.call.setMuted(v.muted); renderVoice(''); },
    }, v.muted ? 'Unmute' : 'Mute'),
    el('button', {
      'aria-pressed': String(v.deafened),
      onclick: () => { v.deafened = !v.deafened; v.call.setDeafened(v.deafened); renderVoice(''); },
    }, v.deafened ? 'Undeafen' : 'Deafen'),
    el('button', { class: 'danger', dataset: { testid: 'voice-leave' }, onclick: leaveVoice }, 'Leave'));
}
