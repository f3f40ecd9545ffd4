// The web client across two federated boxes (plain HTTP on loopback), in Debian's
// Chromium (playwright-core): node tests/js/web/settings.mjs ORIGIN_A ORIGIN_B
// alice (home A) opens bob's invite link of B on B's own page and is sent to her home's
// client, joins, chats, sends a picture and talks in a voice channel on B; links a tablet, which uses B with its
// device certificate, and removes it; subscribes this browser to push and removes it; revokes and
// allows again B's push delegation; moves her home to B, and keeps her guilds on both.
// Exits non-zero with the reason on the first thing a user would see go wrong.
import { chromium } from 'playwright-core';

const [A, B] = process.argv.slice(2);
if (!A || !B) throw new Error('usage: settings.mjs ORIGIN_A ORIGIN_B');
const TIMEOUT = 15000;
const PASSWORD = 'correct horse battery';

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream',
    '--autoplay-policy=no-user-gesture-required'],
});

const problems = [];
async function person(name) {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT);
  page.on('console', (m) => {
    if (m.type() === 'error' && !/status of 4\d\d/.test(m.text())) problems.push(`${name}: console error: ${m.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`${name}: page error: ${e.message}`));
  return { name, context, page };
}

function step(text) {
  console.log(`step: ${text}`);
}

async function signUp(p, origin, username, display) {
  await p.page.goto(origin);
  await p.page.getByTestId('tab-signup').click();
  await p.page.getByTestId('username').fill(username);
  await p.page.getByTestId('display-name').fill(display);
  await p.page.getByTestId('password').fill(PASSWORD);
  await p.page.getByTestId('auth-submit').click();
  await p.page.getByTestId('me-name').filter({ hasText: display }).waitFor();
}

async function newGuild(p, name) {
  await p.page.getByTestId('guild-add').click();
  await p.page.getByTestId('guild-name-input').fill(name);
  await p.page.getByTestId('dialog-ok').click();
  await p.page.getByTestId('guild-name').filter({ hasText: name }).waitFor();
  await p.page.getByTestId('channel').filter({ hasText: 'general' }).first().waitFor();
}

async function send(p, text) {
  await p.page.getByTestId('composer-text').fill(text);
  await p.page.getByTestId('composer-text').press('Enter');
}

const message = (p, text) => p.page.getByTestId('message').filter({ hasText: text });
const boxOf = (p, origin) => p.page.locator(`[data-testid="box"][data-origin="${origin}"]`);
const boxStatus = (p, origin, status) => boxOf(p, origin).locator(`[data-testid="box-status"][data-status="${status}"]`);

async function openGuild(p, origin, name) {
  await boxOf(p, origin).locator(`[data-testid="guild"][aria-label="${name}"]`).click();
  await p.page.getByTestId('guild-name').filter({ hasText: name }).waitFor();
}

try {
  const alice = await person('alice');
  const bob = await person('bob');

  step('alice signs up on A and makes a guild there; bob signs up on B and invites');
  await signUp(alice, A, 'alice', 'Alice');
  await newGuild(alice, 'Kitchen');
  await signUp(bob, B, 'bob', 'Bob');
  await newGuild(bob, 'Garden');
  await bob.page.getByTestId('invite-create').click();
  await bob.page.waitForFunction(() => document.querySelector('[data-testid="invite-link"]').value !== '');
  const link = await bob.page.getByTestId('invite-link').inputValue();
  if (!link.startsWith(`${B}/invite/`)) throw new Error(`the invite link is not B's: ${link}`);

  step('alice opens the link on B\'s page; B sends her to her home\'s client, which joins');
  await alice.page.goto(link);
  await alice.page.getByTestId('invite-preview').filter({ hasText: 'Garden' }).waitFor();
  await alice.page.getByTestId('elsewhere-home').fill(A);
  await alice.page.getByTestId('elsewhere-open').click();
  await alice.page.getByTestId('dialog').filter({ hasText: 'Join Garden' }).waitFor();
  if (new URL(alice.page.url()).origin !== A) throw new Error(`not on A's client: ${alice.page.url()}`);
  await alice.page.getByTestId('dialog-ok').click();
  await boxOf(alice, B).locator('[data-testid="guild"][aria-label="Garden"]').waitFor();
  await boxOf(alice, A).locator('[data-testid="guild"][aria-label="Kitchen"]').waitFor();
  await boxStatus(alice, B, 'online').waitFor();
  await alice.page.getByTestId('guild-box').filter({ hasText: 'on ' }).waitFor();

  step('they chat on B both ways, typing shows, and alice\'s picture reaches bob');
  await send(alice, 'Hello from A');
  await message(bob, 'Hello from A').waitFor();
  await bob.page.getByTestId('composer-text').pressSequentially('Welcome', { delay: 20 });
  await alice.page.getByTestId('typing').filter({ hasText: 'Bob is typing' }).waitFor();
  await bob.page.getByTestId('composer-text').press('Enter');
  await message(alice, 'Welcome').waitFor();
  const png = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==', 'base64');
  await alice.page.getByTestId('attach').setInputFiles({ name: 'dot.png', mimeType: 'image/png', buffer: png });
  await alice.page.getByTestId('composer-text').fill('a picture from A');
  await alice.page.getByTestId('send').click();
  const img = message(bob, 'a picture from A').getByTestId('attachment-image');
  await img.waitFor();
  await bob.page.waitForFunction((el) => el.complete && el.naturalWidth === 1, await img.elementHandle());

  step('voice on B: bob makes a voice channel, alice joins it from her A page, bob sees her and joins');
  await bob.page.getByTestId('channel-add').click();
  await bob.page.getByTestId('channel-name-input').fill('Porch talk');
  await bob.page.getByTestId('channel-kind').selectOption('voice');
  await bob.page.getByTestId('dialog-ok').click();
  await alice.page.getByTestId('channel').filter({ hasText: 'Porch talk' }).click();
  await alice.page.getByTestId('dialog-ok').filter({ hasText: 'Join voice' }).click();
  await alice.page.getByTestId('voice-connected').filter({ hasText: 'Porch talk' }).waitFor();
  await bob.page.getByTestId('channel').filter({ hasText: 'Porch talk' }).click();
  await bob.page.getByTestId('dialog').filter({ hasText: 'In this voice channel: Alice' }).waitFor();
  await bob.page.getByTestId('dialog-ok').click();
  await bob.page.getByTestId('voice-connected').waitFor();
  await alice.page.getByTestId('voice-leave').click();
  await alice.page.getByTestId('voice-connected').waitFor({ state: 'detached' });
  await bob.page.getByTestId('voice-leave').click();

  step('a tablet is linked; it uses B with the certificate it was given');
  const tablet = await person('alice-tablet');
  await tablet.page.goto(A);
  await tablet.page.getByTestId('username').fill('alice');
  await tablet.page.getByTestId('link-start').click();
  await tablet.page.getByTestId('link-code').filter({ hasText: /^[0-9A-Z]{4}-[0-9A-Z]{4}$/ }).waitFor();
  const code = await tablet.page.getByTestId('link-code').textContent();
  await alice.page.getByTestId('settings-open').click();
  await alice.page.getByTestId('link-approve').click();
  await alice.page.getByTestId('link-code-input').fill(code);
  await alice.page.getByTestId('dialog-ok').click();
  await alice.page.getByTestId('link-device').waitFor();
  await alice.page.getByTestId('dialog-ok').click();
  await tablet.page.getByTestId('me-name').filter({ hasText: 'Alice' }).waitFor();
  await tablet.page.reload();
  await tablet.page.getByTestId('me-name').filter({ hasText: 'Alice' }).waitFor();
  // The tablet learns of B from the home's guild list only once it joined there itself;
  // it opens B's guild through the same link.
  await tablet.page.getByTestId('guild-join').click();
  await tablet.page.getByTestId('join-input').fill(link);
  await tablet.page.getByTestId('dialog-ok').click();
  await tablet.page.getByTestId('dialog').filter({ hasText: 'Join Garden' }).waitFor();
  await tablet.page.getByTestId('dialog-ok').click();
  await boxStatus(tablet, B, 'online').waitFor();
  await openGuild(tablet, B, 'Garden');
  await message(tablet, 'Welcome').waitFor();

  step('alice sees both devices in Settings, this one marked, and removes the tablet');
  await alice.page.getByTestId('settings-open').click();
  await alice.page.locator('[data-testid="device"][data-current="true"]').waitFor();
  const others = alice.page.locator('[data-testid="device"][data-current="false"]');
  await others.first().waitFor();
  if ((await others.count()) !== 1) throw new Error(`expected one other device, saw ${await others.count()}`);
  await others.getByTestId('device-remove').click();
  await others.first().waitFor({ state: 'detached' });
  await tablet.page.getByTestId('auth-error').filter({ hasText: 'signed out' }).waitFor();

  step('this browser subscribes to push and the subscription is removed; B\'s push delegation is revoked and allowed again');
  // Headless Chromium reaches no push service: the browser's PushManager is stood in for,
  // returning a subscription with RFC 8291's example keys, which the server checks.
  await alice.context.grantPermissions(['notifications']);
  const subscribed = await alice.page.evaluate(() => {
    const state = { options: null, current: null };
    const sub = {
      endpoint: 'https://push.example.net/wpush/v2/alice',
      get options() { return state.options; },
      toJSON: () => ({
        endpoint: sub.endpoint,
        expirationTime: null,
        keys: { p256dh: 'BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4', auth: 'BTBZMqHH6r4Tts7J_aSIgg' },
      }),
      unsubscribe: async () => { state.current = null; return true; },
    };
    PushManager.prototype.subscribe = async (options) => { state.options = options; state.current = sub; return sub; };
    PushManager.prototype.getSubscription = async () => state.current;
    window.pushStandIn = state;
    return true;
  });
  if (!subscribed) throw new Error('could not stand in for PushManager');
  await alice.page.getByTestId('push-subscribe').click();
  await alice.page.locator('[data-testid="push-subscription"][data-host="push.example.net"]').waitFor();
  const keyLength = await alice.page.evaluate(() => window.pushStandIn.options?.applicationServerKey?.length);
  if (keyLength !== 65) throw new Error(`subscribed with an applicationServerKey of ${keyLength} bytes, not the box's VAPID key`);
  await alice.page.getByTestId('push-remove').click();
  await alice.page.getByTestId('push-subscription').waitFor({ state: 'detached' });
  if (await alice.page.evaluate(() => window.pushStandIn.current !== null)) throw new Error('removing the subscription left the browser subscribed');
  const delegation = alice.page.locator(`[data-testid="delegation"][data-host="${B}"]`);
  await delegation.and(alice.page.locator('[data-revoked="false"]')).waitFor();
  await delegation.getByTestId('delegation-revoke').click();
  await delegation.and(alice.page.locator('[data-revoked="true"]')).waitFor();
  await delegation.getByTestId('delegation-allow').click();
  await alice.page.locator(`[data-testid="delegation"][data-host="${B}"][data-revoked="true"]`).waitFor({ state: 'detached' });

  step('alice moves her home to B; her id and guilds on both boxes stay');
  await alice.page.getByTestId('move-home-select').selectOption(B);
  await alice.page.getByTestId('move-home').click();
  await alice.page.getByTestId('dialog').filter({ hasText: 'Move your home' }).waitFor();
  await Promise.all([alice.page.waitForEvent('load'), alice.page.getByTestId('dialog-ok').click()]);
  await boxStatus(alice, A, 'online').waitFor();
  await boxStatus(alice, B, 'online').waitFor();
  await alice.page.getByTestId('settings-open').click();
  await alice.page.getByTestId('home-origin').filter({ hasText: B }).waitFor();
  await alice.page.locator('#dialog-cancel').click();
  await openGuild(alice, B, 'Garden');
  await send(alice, 'My home is B now');
  await message(bob, 'My home is B now').waitFor();
  await openGuild(alice, A, 'Kitchen');
  await send(alice, 'Still cooking on A');
  await message(alice, 'Still cooking on A').waitFor();
  await alice.page.reload();
  await boxOf(alice, A).locator('[data-testid="guild"][aria-label="Kitchen"]').waitFor();
  await boxOf(alice, B).locator('[data-testid="guild"][aria-label="Garden"]').waitFor();

  if (problems.length) throw new Error(problems.join('\n'));
  console.log('all steps passed');
  await browser.close();
} catch (e) {
  console.error(`FAILED: ${e.message}`);
  if (problems.length) console.error(problems.join('\n'));
  await browser.close();
  process.exit(1);
}
