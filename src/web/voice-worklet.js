// Audio worklets of the voice module (see voice.js): capture cuts the microphone into
// 20 ms frames of 960 samples at 48 kHz; playback plays decoded frames from a small queue.

const FRAME = 960;

class Capture extends AudioWorkletProcessor {
  constructor() {
    super();
    this.frame = new Float32Array(FRAME);
    this.fill = 0;
  }

  process(inputs) {
    const input = inputs[0] && inputs[0][0];
    if (!input) return true;
    let i = 0;
    while (i < input.length) {
      const n = Math.min(FRAME - this.fill, input.length - i);
      this.frame.set(input.subarray(i, i + n), this.fill);
      this.fill += n;
      i += n;
      if (this.fill === FRAME) {
        this.port.postMessage(this.frame, [this.frame.buffer]);
        this.frame = new Float32Array(FRAME);
        this.fill = 0;
      }
    }
    return true;
  }
}

// Playout: waits until two frames (40 ms) are queued before it starts, and again after it
// ran dry (a talker paused, or the network was late), then plays them in order. The
// server sends nothing while nobody talks, so running dry is normal; a queue grown past
// `max` frames (a burst after a stall) is cut back to keep the delay low.
class Playback extends AudioWorkletProcessor {
  constructor() {
    super();
    this.queue = [];
    this.current = null;
    this.offset = 0;
    this.target = 2;
    this.max = 5;
    this.playing = false;
    this.underruns = 0;
    this.port.onmessage = (m) => {
      if (m.data === 'flush') {
        this.queue = [];
        this.current = null;
        this.playing = false;
        return;
      }
      this.queue.push(m.data);
      if (this.queue.length > this.max + 3) this.queue.splice(0, this.queue.length - this.max);
    };
  }

  process(inputs, outputs) {
    const out = outputs[0][0];
    if (!this.playing && this.queue.length >= this.target) this.playing = true;
    let i = 0;
    while (i < out.length) {
      if (!this.playing) {
        out.fill(0, i);
        break;
      }
      if (!this.current || this.offset >= this.current.length) {
        this.current = this.queue.shift() || null;
        this.offset = 0;
        if (!this.current) {
          this.playing = false;
          this.underruns += 1;
          continue;
        }
      }
      const n = Math.min(out.length - i, this.current.length - this.offset);
      out.set(this.current.subarray(this.offset, this.offset + n), i);
      this.offset += n;
      i += n;
    }
    return true;
  }
}

registerProcessor('hearth-capture', Capture);
registerProcessor('hearth-playback', Playback);
