// Issue 13 end to end, in Debian's Chromium (playwright-core), against three real Hearth
// boxes A, B, C, D with TLS on (self-signed): node tests/js/web/boxes.mjs SETTINGS_JSON,
// started by tests/it/web_boxes.rs with SETTINGS_JSON =
//   {"origins": {"A", "B", "C", "D"}, "certs": [PEM paths of A, B, C], "c_pinned": A's
//    pin of C, "c_presented": C's new fingerprint, "carol_invite": a link to C's guild
//    "Attic", "d_pinned": A's pin of D, "dave_invite": a link to D's guild "Shed",
//    "access_token_secs": A's token lifetime, "timeout_ms": per wait}
// alice (home A) joins bob's guild on B from her A-served page and chats with him, goes on
// while A is stopped past her token's lifetime (and reloads then), sees her profile edit
// reach B once A is back, and is warned instead of joined when C's certificate differs
// from A's pin, and led to accept D's certificate, which her browser does not trust yet,
// with the fingerprint A pinned for it. Exits non-zero with the reason on the first thing a user would see go
// wrong.
//
// Control channel: `control: stop A` / `control: start A` on stdout; the test does it
// and answers `ok` on stdin.
import { chromium } from 'playwright-core';
import crypto from 'node:crypto';
import fs from 'node:fs';
import readline from 'node:readline';

const settings = JSON.parse(process.argv[2] ?? 'null');
if (!settings) throw new Error('usage: boxes.mjs SETTINGS_JSON (see tests/it/web_boxes.rs)');
const { origins: { A, B, C, D }, certs, c_pinned: cPinned, c_presented: cPresented, d_pinned: dPinned } = settings;
const TIMEOUT = settings.timeout_ms;
const PASSWORD = 'correct horse battery';
// The whole script stays well under the Rust test's budget (~90 s with server starts).
const BUDGET_MS = 85000;
setTimeout(() => {
  console.error(`FAILED: the script ran over ${BUDGET_MS} ms`);
  process.exit(1);
}, BUDGET_MS).unref();

// ---- Control channel ----
const answers = [];
const waiting = [];
readline.createInterface({ input: process.stdin }).on('line', (line) => {
  const next = waiting.shift();
  if (next) next(line);
  else answers.push(line);
});
async function control(command) {
  const answer = answers.length ? Promise.resolve(answers.shift()) : new Promise((resolve) => waiting.push(resolve));
  console.log(`control: ${command}`);
  const got = (await answer).trim();
  if (got !== 'ok') throw new Error(`control: ${command}: ${got}`);
}

// ---- The browser: trusts exactly the three boxes' current certificates ----
// As a person who clicked through each box's warning: Chromium skips certificate errors
// for these public keys (base64 SHA-256 of the SubjectPublicKeyInfo). It honours the flag
// only with a --user-data-dir, which playwright's launch() always passes (a fresh
// profile), headless or not. --enable-precise-memory-info makes performance.memory exact
// instead of rounded to buckets; --expose-gc lets the figure be taken after a collection.
const spki = certs.map((path) => crypto.createHash('sha256')
  .update(new crypto.X509Certificate(fs.readFileSync(path)).publicKey.export({ type: 'spki', format: 'der' }))
  .digest('base64'));
const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    `--ignore-certificate-errors-spki-list=${spki.join(',')}`, '--enable-precise-memory-info',
    '--js-flags=--expose-gc'],
});

// Origins switched off on purpose: the browser's own network errors for them are expected.
const down = new Set();
function expectedNetworkError(m) {
  if (!/net::ERR_|WebSocket connection to .* failed/.test(m.text())) return false;
  const where = `${m.location().url ?? ''} ${m.text()}`;
  return [...down].some((origin) => where.includes(origin) || where.includes(origin.replace('https://', 'wss://')));
}

const problems = [];
const people = [];
async function person(name) {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT);
  // Content Security Policy violations and script errors fail the test.
  await page.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (e) => {
      console.error(`CSP violation: ${e.violatedDirective} ${e.blockedURI}`);
    });
  });
  page.on('console', (m) => {
    if (m.type() === 'error' && !/status of 4\d\d/.test(m.text()) && !expectedNetworkError(m)) {
      problems.push(`${name}: console error: ${m.text()} (${m.location().url ?? ''})`);
    }
  });
  page.on('pageerror', (e) => problems.push(`${name}: page error: ${e.message}`));
  // Chromium's own error page is what the client must never leave a person on.
  page.on('framenavigated', (frame) => {
    if (frame === page.mainFrame() && frame.url().startsWith('chrome-error://')) {
      problems.push(`${name}: Chromium's error page is shown`);
    }
  });
  const p = { name, context, page };
  people.push(p);
  return p;
}

// Each step first makes sure nothing went wrong in the one before.
function check() {
  for (const p of people) {
    if (p.page.url().startsWith('chrome-error://')) problems.push(`${p.name}: Chromium's error page is shown`);
  }
  if (problems.length) throw new Error(problems.join('\n'));
}

function step(text) {
  check();
  console.log(`step: ${text}`);
}

async function signUp(p, username, display) {
  await p.page.getByTestId('tab-signup').click();
  await p.page.getByTestId('username').fill(username);
  await p.page.getByTestId('display-name').fill(display);
  await p.page.getByTestId('password').fill(PASSWORD);
  await p.page.getByTestId('auth-submit').click();
  await p.page.getByTestId('me-name').filter({ hasText: display }).waitFor();
}

async function createGuild(p, name) {
  await p.page.getByTestId('guild-add').click();
  await p.page.getByTestId('guild-name-input').fill(name);
  await p.page.getByTestId('dialog-ok').click();
  await p.page.getByTestId('guild-name').filter({ hasText: name }).waitFor();
  await p.page.getByTestId('channel').filter({ hasText: 'general' }).first().waitFor();
}

async function sendMessage(p, text) {
  p.typedAt = Date.now();
  await p.page.getByTestId('composer-text').fill(text);
  await p.page.getByTestId('composer-text').press('Enter');
}

// Types like a person, so the others see "… is typing". The client sends one typing
// notice per 4 s, on the first input after that: wait until the last one is older.
async function typeSlowly(p, text) {
  const wait = (p.typedAt ?? 0) + 4500 - Date.now();
  if (wait > 0) await p.page.waitForTimeout(wait);
  p.typedAt = Date.now();
  await p.page.getByTestId('composer-text').pressSequentially(text, { delay: 20 });
}

function message(p, text) {
  return p.page.getByTestId('message').filter({ hasText: text });
}

// The sidebar's section of one box, its status, and a guild's button in it.
function box(p, origin) {
  return p.page.locator(`[data-testid="box"][data-origin="${origin}"]`);
}

async function boxStatus(p, origin, status, timeout = TIMEOUT) {
  await box(p, origin).locator(`[data-testid="box-status"][data-status="${status}"]`).waitFor({ timeout })
    .catch(async () => {
      const now = await box(p, origin).getByTestId('box-status').getAttribute('data-status', { timeout: 1000 }).catch(() => 'no status shown');
      throw new Error(`${p.name}: ${origin}'s status is ${now}, not ${status}`);
    });
}

function guildIn(p, origin, name) {
  return box(p, origin).getByTestId('guild').and(p.page.getByRole('button', { name }));
}

// The first 16 hex digits of a fingerprint, however it is written (case, colons).
function hex16(fingerprint) {
  return fingerprint.replace(/[^0-9a-f]/gi, '').slice(0, 16).toLowerCase();
}

try {
  const alice = await person('alice');
  const bob = await person('bob');

  step('Chromium trusts the three boxes\' certificates: A\'s page loads over HTTPS');
  for (const origin of [A, B, C]) {
    const answer = await alice.page.goto(`${origin}/.well-known/hearth`);
    if (!answer || answer.status() !== 200) throw new Error(`${origin}/.well-known/hearth: ${answer?.status()}`);
  }
  await alice.page.goto(A);
  await alice.page.getByTestId('auth-form').waitFor();
  if (!alice.page.url().startsWith(A)) throw new Error(`A's page is at ${alice.page.url()}`);

  step('alice signs up on A and makes a guild there; bob signs up on B, makes Garden and an invite');
  await signUp(alice, 'alice', 'Alice');
  if ((await alice.page.getByTestId('me-name').getAttribute('data-identity')) !== 'present') {
    throw new Error('alice has no identity key after signing up');
  }
  await createGuild(alice, 'Porch');
  await sendMessage(alice, 'The porch is open');
  await message(alice, 'The porch is open').waitFor();
  await bob.page.goto(B);
  await signUp(bob, 'bob', 'Bob');
  await createGuild(bob, 'Garden');
  await bob.page.getByTestId('invite-create').click();
  await bob.page.waitForFunction(() => document.querySelector('[data-testid="invite-link"]').value !== '');
  const gardenLink = await bob.page.getByTestId('invite-link').inputValue();
  if (!gardenLink.startsWith(`${B}/invite/`)) throw new Error(`bob's invite link ${gardenLink}`);
  await sendMessage(bob, 'Welcome to the Garden');
  await message(bob, 'Welcome to the Garden').waitFor();

  step('control channel: A stops and starts again with its certificate; alice\'s page reloads signed in');
  down.add(A);
  await control('stop A');
  await control('start A');
  await alice.page.reload();
  await alice.page.getByTestId('me-name').filter({ hasText: 'Alice' }).waitFor();
  await message(alice, 'The porch is open').waitFor();
  down.delete(A);

  step('alice pastes bob\'s link on her A page: the preview comes from B and she joins Garden');
  const joinStarted = Date.now();
  await alice.page.getByTestId('guild-join').click();
  await alice.page.getByTestId('join-input').fill(gardenLink);
  await alice.page.getByTestId('dialog-ok').click();
  await alice.page.getByTestId('dialog').filter({ hasText: 'Join Garden' }).waitFor();
  await alice.page.getByTestId('dialog-ok').click();
  await message(alice, 'Welcome to the Garden').waitFor();
  console.log(`measure: invite-to-first-message-ms ${Date.now() - joinStarted}`);
  await guildIn(alice, B, 'Garden').waitFor();
  await box(alice, A).waitFor();
  await guildIn(alice, A, 'Porch').waitFor();
  await boxStatus(alice, B, 'online');
  await boxStatus(alice, A, 'online');

  step('alice and bob chat live both ways in Garden, typing shows');
  await typeSlowly(alice, 'Hello ');
  await bob.page.getByTestId('typing').filter({ hasText: 'Alice is typing' }).waitFor();
  await alice.page.getByTestId('composer-text').pressSequentially('from A', { delay: 5 });
  await alice.page.getByTestId('composer-text').press('Enter');
  await message(bob, 'Hello from A').waitFor();
  const author = await message(bob, 'Hello from A').getByTestId('message-author').textContent();
  if (author !== 'Alice') throw new Error(`alice's message shows for bob as by ${author}`);
  await typeSlowly(bob, 'Hi Alice, ');
  await alice.page.getByTestId('typing').filter({ hasText: 'Bob is typing' }).waitFor();
  await bob.page.getByTestId('composer-text').pressSequentially('welcome', { delay: 5 });
  await bob.page.getByTestId('composer-text').press('Enter');
  await message(alice, 'Hi Alice, welcome').waitFor();
  await sendMessage(alice, 'Lovely garden');
  await message(bob, 'Lovely garden').waitFor();

  step('A is stopped: its box shows unreachable, alice goes on in Garden past her token\'s lifetime');
  down.add(A);
  const stopped = Date.now();
  await control('stop A');
  await boxStatus(alice, A, 'unreachable');
  await alice.page.getByTestId('home-unreachable').waitFor({ state: 'visible' });
  const lifetime = (settings.access_token_secs * 2 + 3) * 1000;
  await alice.page.waitForTimeout(Math.max(0, lifetime - (Date.now() - stopped)));
  await sendMessage(alice, 'Still here without A');
  await message(bob, 'Still here without A').waitFor();
  await sendMessage(bob, 'I hear you');
  await message(alice, 'I hear you').waitFor();
  await boxStatus(alice, B, 'online');

  step('alice reloads while A is down: the client (not an error page) says so, and Garden works');
  const reloaded = await alice.page.reload().then(() => null, (e) => e.message.split('\n')[0]);
  if (reloaded) throw new Error(`reloading with A down: ${reloaded} (no app shell from the service worker?)`);
  await alice.page.getByTestId('home-unreachable').waitFor({ state: 'visible' });
  await guildIn(alice, B, 'Garden').click();
  await message(alice, 'I hear you').waitFor();
  await sendMessage(alice, 'Reloaded without A');
  await message(bob, 'Reloaded without A').waitFor();

  step('A returns: its box is online again within seconds, alice\'s new name reaches bob on B');
  await control('start A');
  await boxStatus(alice, A, 'online', 10000);
  await alice.page.getByTestId('home-unreachable').waitFor({ state: 'hidden', timeout: 10000 });
  down.delete(A);
  await alice.page.getByTestId('settings-open').click();
  await alice.page.getByTestId('settings-name').fill('Alice Liddell');
  await alice.page.getByTestId('dialog-ok').click();
  await message(bob, 'Hello from A').getByTestId('message-author').filter({ hasText: 'Alice Liddell' })
    .waitFor({ timeout: 10000 })
    .catch(() => { throw new Error('bob does not see alice\'s new name on her messages within 10 s'); });

  step('alice reloads: Garden under B and Porch under A again, with their history');
  const started = new Map();
  const sizes = [];
  const originOf = (url) => { try { return new URL(url).origin; } catch { return url; } };
  const onRequest = (request) => {
    const origin = originOf(request.url());
    started.set(origin, (started.get(origin) ?? 0) + 1);
  };
  const onFinished = (request) => {
    sizes.push(request.sizes().then(
      (s) => [originOf(request.url()), s.responseHeadersSize + s.responseBodySize],
      () => [originOf(request.url()), 0],
    ));
  };
  alice.page.on('request', onRequest);
  alice.page.on('requestfinished', onFinished);
  await alice.page.reload();
  await alice.page.waitForLoadState('networkidle');
  alice.page.off('request', onRequest);
  alice.page.off('requestfinished', onFinished);
  const bytes = new Map();
  for (const [origin, n] of await Promise.all(sizes)) bytes.set(origin, (bytes.get(origin) ?? 0) + n);
  for (const origin of [A, B, C]) {
    console.log(`measure: requests-per-box ${origin} ${started.get(origin) ?? 0} ${bytes.get(origin) ?? 0}`);
  }
  await guildIn(alice, A, 'Porch').waitFor();
  await guildIn(alice, B, 'Garden').click();
  await message(alice, 'Reloaded without A').waitFor();
  await message(alice, 'Welcome to the Garden').waitFor();
  await guildIn(alice, A, 'Porch').click();
  await message(alice, 'The porch is open').waitFor();

  step('carol\'s link to Attic on C, whose certificate differs from A\'s pin: a warning, no join');
  await alice.page.getByTestId('guild-join').click();
  await alice.page.getByTestId('join-input').fill(settings.carol_invite);
  await alice.page.getByTestId('dialog-ok').click();
  const warning = alice.page.getByTestId('box-warning').filter({ hasText: 'differs' });
  await warning.waitFor();
  const said = (await warning.textContent()).replace(/[:\s]/g, '').toLowerCase();
  for (const [what, fingerprint] of [['A\'s pin', cPinned], ['the link\'s', cPresented]]) {
    if (!said.includes(hex16(fingerprint))) {
      throw new Error(`the warning does not show ${what} fingerprint ${fingerprint}: ${await warning.textContent()}`);
    }
  }
  if (await box(alice, C).count()) await boxStatus(alice, C, 'mismatch');
  if (await alice.page.getByRole('button', { name: 'Attic' }).count()) throw new Error('alice joined Attic');

  step('dave\'s link to Shed on D, whose certificate alice\'s browser has not accepted: the client leads her to accept it, with A\'s pin to compare');
  await alice.page.keyboard.press('Escape');
  // Chromium refuses D's certificate: the client's requests to D fail, as expected.
  down.add(D);
  await alice.page.getByTestId('guild-join').click();
  await alice.page.getByTestId('join-input').fill(settings.dave_invite);
  await alice.page.getByTestId('dialog-ok').click();
  const problem = alice.page.getByTestId('box-problem');
  await problem.waitFor();
  const shownFingerprint = (await problem.getByTestId('box-fingerprint').textContent()).replace(/[:\s]/g, '').toLowerCase();
  if (shownFingerprint !== dPinned.replace(/[:\s]/g, '').toLowerCase()) {
    throw new Error(`the fingerprint to compare is not A's pin of D (${dPinned}): ${shownFingerprint}`);
  }
  const open = await problem.getByTestId('box-open').getAttribute('href');
  if (!open.startsWith(D)) throw new Error(`the link to accept D's certificate goes to ${open}`);
  await boxStatus(alice, D, 'certificate');
  if (await alice.page.getByRole('button', { name: 'Shed' }).count()) throw new Error('alice joined Shed');

  step('alice makes 18 more guilds on A: the tab\'s memory with 20 guilds on her boxes');
  // She closes the dialog first.
  await alice.page.keyboard.press('Escape');
  for (let i = 1; i <= 18; i++) await createGuild(alice, `Room ${i}`);
  await guildIn(alice, A, 'Room 18').waitFor();
  await guildIn(alice, B, 'Garden').waitFor();
  await alice.page.evaluate(() => window.gc());
  const heap = await alice.page.evaluate(() => performance.memory.usedJSHeapSize);
  console.log(`measure: tab-memory-bytes ${heap}`);
  step('no error page, no unexpected console or page errors');
  check();
  console.log('all steps passed');
  await browser.close();
  process.exit(0);
} catch (e) {
  console.error(`FAILED: ${e.message}`);
  if (problems.length) console.error(problems.join('\n'));
  // What each person had in front of them: the page and any open dialog.
  for (const p of people) {
    const shown = await p.page.getByTestId('dialog').filter({ visible: true }).first().innerText({ timeout: 500 }).catch(() => 'no dialog');
    console.error(`${p.name} sees ${p.page.url()}: ${shown.replace(/\s+/g, ' ').slice(0, 300)}`);
  }
  await browser.close();
  process.exit(1);
}
