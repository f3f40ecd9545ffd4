// Voice in the browser: one voice socket, 20 ms mono 48 kHz Opus frames both ways (docs/protocol.md
// "Voice"), encoded and decoded with WebCodecs, captured and played by audio worklets.
//
//   const call = await joinVoice({ ticketUrl: async () => url, onEvent, microphone: true,
//                                  processing: true });
// (`processing`: the browser's echo cancellation, noise suppression and gain control on the
// microphone; off for music, or a test tone, which noise suppression would remove.)
//   call.setMuted(bool); call.setDeafened(bool); call.stats(); call.recentAudio();
//   await call.leave();
//
// onEvent receives {type: 'ready' | 'participants' | 'state' | 'moved' | 'closed' | 'error',
// ...}. joinVoice resolves once the server's `ready` arrived, and rejects with the server's
// close reason when it refuses the socket.

const RATE = 48000;
const FRAME = 960;
const FRAME_US = 20000;
const HEADER = 6;
const RECENT = RATE / 2; // samples kept for recentAudio()

export async function voiceSupport() {
  if (typeof AudioEncoder === 'undefined' || typeof AudioDecoder === 'undefined') {
    return 'this browser has no WebCodecs audio (Chromium 94+, Firefox 130+)';
  }
  if (typeof AudioWorkletNode === 'undefined') return 'this browser has no AudioWorklet';
  const config = { codec: 'opus', sampleRate: RATE, numberOfChannels: 1, bitrate: 32000 };
  const enc = await AudioEncoder.isConfigSupported(config).catch(() => ({ supported: false }));
  const dec = await AudioDecoder.isConfigSupported({ codec: 'opus', sampleRate: RATE, numberOfChannels: 1 })
    .catch(() => ({ supported: false }));
  if (!enc.supported || !dec.supported) return 'this browser cannot encode or decode Opus';
  return null;
}

function levelDbfs(pcm) {
  let sum = 0;
  for (let i = 0; i < pcm.length; i++) sum += pcm[i] * pcm[i];
  const rms = Math.sqrt(sum / Math.max(1, pcm.length));
  return rms > 0 ? 20 * Math.log10(rms) : -120;
}

export async function joinVoice({ ticketUrl, onEvent = () => {}, microphone = true, processing = true }) {
  const missing = await voiceSupport();
  if (missing) throw new Error(`this browser cannot do voice: ${missing}`);
  const url = await ticketUrl();
  const stats = {
    framesSent: 0, framesReceived: 0, framesDecoded: 0, framesConcealed: 0,
    lastOutputLevelDbfs: -120, lastInputLevelDbfs: -120, underruns: 0,
  };
  const recent = new Float32Array(RECENT);
  let recentAt = 0;
  let muted = false;
  let deafened = false;
  let closed = false;

  const ctx = new AudioContext({ sampleRate: RATE, latencyHint: 'interactive' });
  await ctx.audioWorklet.addModule('/web/voice-worklet.js');
  if (ctx.state === 'suspended') await ctx.resume().catch(() => {});
  const playback = new AudioWorkletNode(ctx, 'hearth-playback', { numberOfInputs: 0, outputChannelCount: [1] });
  const volume = ctx.createGain();
  playback.connect(volume).connect(ctx.destination);
  playback.port.onmessage = (m) => { if (m.data && m.data.underruns) stats.underruns = m.data.underruns; };

  // Receiving: decode, keep the last half second, play.
  let lastSeq = null;
  const decoder = new AudioDecoder({
    output: (data) => {
      const pcm = new Float32Array(data.numberOfFrames);
      data.copyTo(pcm, { planeIndex: 0, format: 'f32-planar' });
      data.close();
      stats.framesDecoded += 1;
      stats.lastOutputLevelDbfs = levelDbfs(pcm);
      for (let i = 0; i < pcm.length; i++) recent[(recentAt + i) % RECENT] = pcm[i];
      recentAt = (recentAt + pcm.length) % RECENT;
      if (!deafened) playback.port.postMessage(pcm, [pcm.buffer]);
    },
    error: (e) => onEvent({ type: 'error', message: `decoder: ${e.message}` }),
  });
  decoder.configure({ codec: 'opus', sampleRate: RATE, numberOfChannels: 1 });

  const ws = new WebSocket(url);
  ws.binaryType = 'arraybuffer';

  function receive(buffer) {
    if (buffer.byteLength <= HEADER) return;
    const view = new DataView(buffer);
    const seq = view.getUint16(0);
    const timestamp = view.getUint32(2);
    stats.framesReceived += 1;
    if (lastSeq !== null) {
      const gap = (seq - lastSeq - 1) & 0xffff;
      if (gap > 0 && gap < 4) {
        // Lost packets: silence in their place, so the timeline stays right.
        for (let i = 0; i < gap; i++) playback.port.postMessage(new Float32Array(FRAME));
        stats.framesConcealed += gap;
      }
    }
    lastSeq = seq;
    if (decoder.state !== 'configured') return;
    decoder.decode(new EncodedAudioChunk({
      type: 'key',
      timestamp: Math.round((timestamp / RATE) * 1e6),
      data: new Uint8Array(buffer, HEADER),
    }));
  }

  // Sending: encode each captured frame; timestamps count every frame, sent or not.
  let seq = Math.floor(Math.random() * 0x10000);
  const base = Math.floor(Math.random() * 0x100000000);
  let frameIndex = 0;
  let stream = null;
  let capture = null;
  let sink = null;
  const encoder = new AudioEncoder({
    output: (chunk) => {
      if (closed || ws.readyState !== WebSocket.OPEN) return;
      const index = Math.round(chunk.timestamp / FRAME_US);
      const packet = new Uint8Array(HEADER + chunk.byteLength);
      const view = new DataView(packet.buffer);
      view.setUint16(0, seq);
      view.setUint32(2, (base + index * FRAME) >>> 0);
      chunk.copyTo(packet.subarray(HEADER));
      seq = (seq + 1) & 0xffff;
      ws.send(packet);
      stats.framesSent += 1;
    },
    error: (e) => onEvent({ type: 'error', message: `encoder: ${e.message}` }),
  });
  encoder.configure({
    codec: 'opus', sampleRate: RATE, numberOfChannels: 1, bitrate: 32000,
    opus: { frameDuration: FRAME_US, complexity: 5, useinbandfec: true, packetlossperc: 10 },
  });

  async function startMicrophone() {
    stream = await navigator.mediaDevices.getUserMedia({
      audio: {
        channelCount: 1,
        echoCancellation: processing,
        noiseSuppression: processing,
        autoGainControl: processing,
      },
    });
    const source = ctx.createMediaStreamSource(stream);
    capture = new AudioWorkletNode(ctx, 'hearth-capture', { numberOfOutputs: 1, outputChannelCount: [1] });
    sink = ctx.createGain();
    sink.gain.value = 0;
    source.connect(capture).connect(sink).connect(ctx.destination);
    capture.port.onmessage = (m) => {
      const pcm = m.data;
      const index = frameIndex++;
      stats.lastInputLevelDbfs = levelDbfs(pcm);
      if (muted || deafened || closed || ws.readyState !== WebSocket.OPEN || encoder.state !== 'configured') return;
      const data = new AudioData({
        format: 'f32-planar', sampleRate: RATE, numberOfFrames: FRAME, numberOfChannels: 1,
        timestamp: index * FRAME_US, data: pcm,
      });
      encoder.encode(data);
      data.close();
    };
  }

  function cleanup() {
    if (closed) return;
    closed = true;
    if (stream) for (const t of stream.getTracks()) t.stop();
    for (const c of [encoder, decoder]) if (c.state !== 'closed') c.close();
    ctx.close().catch(() => {});
  }

  const ready = new Promise((resolve, reject) => {
    ws.onmessage = (m) => {
      if (typeof m.data !== 'string') {
        receive(m.data);
        return;
      }
      let op;
      try {
        op = JSON.parse(m.data);
      } catch (e) {
        return;
      }
      if (op.op === 'ready') {
        onEvent({ type: 'ready', ready: op });
        resolve(op);
      } else if (op.op === 'participants') onEvent({ type: 'participants', list: op.participants });
      else if (op.op === 'state') onEvent({ type: 'state', state: op.state });
      else if (op.op === 'moved') {
        lastSeq = null;
        playback.port.postMessage('flush');
        onEvent({ type: 'moved', guildId: op.guild_id, channelId: op.channel_id });
      }
    };
    ws.onclose = (c) => {
      cleanup();
      onEvent({ type: 'closed', code: c.code, reason: c.reason });
      reject(Object.assign(new Error(c.reason || `voice socket closed (${c.code})`), { code: c.code }));
    };
    ws.onerror = () => {};
  });
  await ready;
  if (microphone) {
    try {
      await startMicrophone();
    } catch (e) {
      onEvent({ type: 'error', message: `microphone: ${e.message}` });
    }
  }

  const sendState = (fields) => {
    if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ op: 'state', ...fields }));
  };
  return {
    setMuted(value) {
      muted = Boolean(value);
      sendState({ self_mute: muted });
    },
    setDeafened(value) {
      deafened = Boolean(value);
      volume.gain.value = deafened ? 0 : 1;
      if (deafened) playback.port.postMessage('flush');
      sendState({ self_deaf: deafened });
    },
    stats() {
      return { ...stats, muted, deafened, microphone: Boolean(stream) };
    },
    /** The last half second decoded (for level meters), oldest first. */
    recentAudio() {
      const out = new Float32Array(RECENT);
      out.set(recent.subarray(recentAt));
      out.set(recent.subarray(0, recentAt), RECENT - recentAt);
      return out;
    },
    async leave() {
      if (ws.readyState === WebSocket.OPEN) ws.close(1000, 'left');
      cleanup();
    },
  };
}
