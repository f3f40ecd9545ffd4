// The browser part of image/smoke.sh: Debian's Chromium (playwright-core from
// tests/js/node_modules) sets up a freshly booted image through qemu's forwarded port, as
// an owner would with the card's hearth-setup.txt in hand, then makes a guild and sends a
// message.
//
//   node image/smoke-setup.mjs ORIGIN PORT SETUP_CODE SPKI FINGERPRINT QEMU_START_MS
//
// ORIGIN is the box's own origin (`origin` of /.well-known/hearth, e.g.
// https://hearth.local): Chromium resolves its host to 127.0.0.1:PORT, so the page, its
// DPoP proofs and its invite links carry the origin the box serves, as on a LAN. SPKI is
// the base64 SHA-256 of the certificate's public key: Chromium trusts that key only
// (--ignore-certificate-errors-spki-list; never --ignore-certificate-errors). FINGERPRINT
// is the certificate's SHA-256 (hex, any case, colons allowed) that the box published in
// hearth-setup.txt and /.well-known/hearth; the certificate Chromium received and the
// one the setup page shows must both have it. QEMU_START_MS (milliseconds since the
// epoch) is when qemu started, so the time to "Set up this Hearth" in the browser is
// printed as `smoke-setup: setup page shown after N s`.
//
// Prints `step: …` lines, then `all steps passed`; any failure exits 1 with what the page
// showed.
import crypto from 'node:crypto';
import { createRequire } from 'node:module';

const [origin, port, code, spki, fingerprint, qemuStartMs] = process.argv.slice(2);
if (!origin || !port || !code || !spki || !fingerprint || !qemuStartMs) {
  throw new Error('usage: smoke-setup.mjs ORIGIN PORT SETUP_CODE SPKI FINGERPRINT QEMU_START_MS');
}
// Software emulation of a 2-core arm64 board on a shared host: every step is slow.
const TIMEOUT = 120000;
const PASSWORD = 'correct horse battery';
const hex = (text) => text.replace(/[^0-9a-fA-F]/g, '').toLowerCase();
const expected = hex(fingerprint);
if (expected.length !== 64) throw new Error(`FINGERPRINT ${fingerprint} is not a SHA-256`);

const require = createRequire(import.meta.url);
const { chromium } = require(process.env.PLAYWRIGHT_CORE
  || new URL('../tests/js/node_modules/playwright-core/index.js', import.meta.url).pathname);

const host = new URL(origin).hostname;
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    `--host-resolver-rules=MAP ${host} 127.0.0.1:${port}`,
    `--ignore-certificate-errors-spki-list=${spki}`],
});

const problems = [];
function step(text) {
  console.log(`step: ${text}`);
}

try {
  const context = await browser.newContext();
  const p = await context.newPage();
  p.setDefaultTimeout(TIMEOUT);
  p.setDefaultNavigationTimeout(TIMEOUT);
  p.on('console', (m) => {
    if (m.type() === 'error' && !/status of 4\d\d/.test(m.text())) problems.push(`console error: ${m.text()}`);
  });
  p.on('pageerror', (e) => problems.push(`page error: ${e.stack || e.message}`));

  // Chromium keeps the certificates it received for Network.getCertificate only while
  // the Network domain is on.
  const cdp = await context.newCDPSession(p);
  await cdp.send('Network.enable');

  step(`${origin}/ shows "Set up this Hearth"`);
  await p.goto(`${origin}/`);
  await p.getByTestId('setup').waitFor();
  const shownAfter = (Date.now() - Number(qemuStartMs)) / 1000;
  console.log(`smoke-setup: setup page shown after ${shownAfter.toFixed(1)} s`);
  if (await p.getByTestId('auth-form').isVisible()) throw new Error('the sign-in form shows on a fresh box');

  step('the certificate Chromium received and the one the page shows are the published one');
  const { tableNames } = await cdp.send('Network.getCertificate', { origin });
  if (!tableNames?.length) throw new Error(`Chromium has no certificate for ${origin}`);
  const received = crypto.createHash('sha256').update(Buffer.from(tableNames[0], 'base64')).digest('hex');
  if (received !== expected) throw new Error(`Chromium received certificate ${received}, published ${expected}`);
  const pair = '[0-9A-Fa-f]{2}';
  const colons = new RegExp(`${pair}(:${pair}){31}`);
  await p.getByTestId('setup-fingerprint').filter({ hasText: colons }).waitFor();
  const shown = hex((await p.getByTestId('setup-fingerprint').textContent()).match(colons)[0]);
  if (shown !== expected) throw new Error(`the setup page shows fingerprint ${shown}, published ${expected}`);

  step('the setup code from the box makes the owner, signed in');
  await p.getByTestId('setup-code').fill(code);
  await p.getByTestId('setup-name').fill('Smoke box');
  await p.getByTestId('setup-registration').selectOption('invite');
  await p.getByTestId('setup-username').fill('owner');
  await p.getByTestId('setup-password').fill(PASSWORD);
  await p.getByTestId('setup-submit').click();
  await p.getByTestId('me-name').filter({ hasText: 'owner' }).waitFor();
  const info = await p.evaluate(() => fetch('/.well-known/hearth').then((r) => r.json()));
  if (!info.claimed || info.setup || info.name !== 'Smoke box') {
    throw new Error(`the box after setup: ${JSON.stringify(info)}`);
  }

  step('the owner makes a guild and sends a message');
  await p.getByTestId('guild-add').click();
  await p.getByTestId('guild-name-input').fill('Smoke');
  await p.getByTestId('dialog-ok').click();
  await p.getByTestId('guild-name').filter({ hasText: 'Smoke' }).waitFor();
  await p.getByTestId('channel').filter({ hasText: 'general' }).first().waitFor();
  await p.getByTestId('composer-text').fill('Hello from the smoke test');
  await p.getByTestId('composer-text').press('Enter');
  await p.getByTestId('message').filter({ hasText: 'Hello from the smoke test' }).waitFor();

  step('after a reload the message comes back from the box');
  await p.reload();
  await p.getByTestId('me-name').filter({ hasText: 'owner' }).waitFor();
  await p.getByTestId('message').filter({ hasText: 'Hello from the smoke test' }).waitFor();

  if (problems.length) throw new Error(problems.join('\n'));
  console.log('all steps passed');
  await browser.close();
} catch (e) {
  console.error(`FAILED: ${e.stack || e}`);
  if (problems.length) console.error(problems.join('\n'));
  for (const c of browser.contexts()) {
    for (const page of c.pages()) {
      const seen = await page.evaluate(() => document.body?.innerText || '').catch((err) => err.message);
      console.error(`the page shows: ${seen.replace(/\s+/g, ' ').slice(0, 800)}`);
    }
  }
  await browser.close();
  process.exit(1);
}
