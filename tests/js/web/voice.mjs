// The browser's voice module (src/web/voice.js) in Debian's Chromium against a real
// server: node tests/js/web/voice.mjs ORIGIN TICKET_URL WAV
// The fake microphone plays WAV (a 1 kHz tone). Prints one JSON line per phase:
//   {"phase":"heard", ...}  what the page decoded (Goertzel powers) and its counters
//   {"phase":"muted"}        printed right after muting; the page stays 2 s more
//   {"phase":"left", ...}    after leave()
//   {"phase":"bad_ticket", "code", "message"}
import { chromium } from 'playwright-core';

const [origin, ticketUrl, wav] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream',
    `--use-file-for-fake-audio-capture=${wav}`, '--autoplay-policy=no-user-gesture-required'],
});
const say = (obj) => console.log(JSON.stringify(obj));
try {
  const context = await browser.newContext({ permissions: ['microphone'] });
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(origin);
  await page.evaluate(async (url) => {
    const { joinVoice } = await import('/web/voice.js');
    window.events = [];
    window.call = await joinVoice({ ticketUrl: async () => url, onEvent: (e) => window.events.push(e), microphone: true, processing: false });
  }, ticketUrl);
  await page.waitForTimeout(3000);
  const heard = await page.evaluate(() => {
    const pcm = window.call.recentAudio();
    const power = (f) => {
      const w = 2 * Math.PI * f / 48000;
      const c = 2 * Math.cos(w);
      let s1 = 0; let s2 = 0;
      for (let i = 0; i < pcm.length; i++) {
        const s0 = pcm[i] + c * s1 - s2;
        s2 = s1; s1 = s0;
      }
      return (s1 * s1 + s2 * s2 - c * s1 * s2) / (pcm.length * pcm.length);
    };
    return {
      p440: power(440), p1000: power(1000), p2500: power(2500),
      stats: window.call.stats(),
      events: window.events.map((e) => e.type),
    };
  });
  say({ phase: 'heard', ...heard, errors });
  await page.evaluate(() => window.call.setMuted(true));
  say({ phase: 'muted' });
  await page.waitForTimeout(2000);
  const stats = await page.evaluate(async () => {
    const s = window.call.stats();
    await window.call.leave();
    return s;
  });
  say({ phase: 'left', stats });
  const bad = await page.evaluate(async (url) => {
    const { joinVoice } = await import('/web/voice.js');
    try {
      await joinVoice({ ticketUrl: async () => url, microphone: false });
      return { code: null, message: 'joined with a bad ticket' };
    } catch (e) {
      return { code: e.code ?? null, message: e.message };
    }
  }, ticketUrl.replace(/ticket=[^&]*/, 'ticket=not-a-ticket'));
  say({ phase: 'bad_ticket', ...bad });
  await browser.close();
} catch (e) {
  console.error(`FAILED: ${e.message}`);
  await browser.close();
  process.exit(1);
}
