// Unread state and notification settings in the web client, in Debian's Chromium
// (playwright-core), against a real server: node tests/js/web/unread.mjs ORIGIN
// alice writes in a guild while bob (two browsers) looks at another channel: bob sees the
// channel unread and his mention counted on the channel and the guild; opening it shows
// the "new messages" divider; his other browser clears within a second; "Mark as read";
// notification settings of a channel saved, kept across a reload, and followed by the
// other browser. Exits non-zero with the reason on the first thing a user would see go
// wrong.
import { chromium } from 'playwright-core';

const origin = process.argv[2];
if (!origin) throw new Error('usage: unread.mjs ORIGIN');
const TIMEOUT = 15000;
const PASSWORD = 'correct horse battery';

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});

const problems = [];
const people = [];
async function person(name) {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT);
  page.on('console', (m) => {
    if (m.type() === 'error' && !/status of 4\d\d/.test(m.text())) problems.push(`${name}: console error: ${m.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`${name}: page error: ${e.message}`));
  await page.goto(origin);
  const p = { name, context, page };
  people.push(p);
  return p;
}

function step(text) {
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

async function signIn(p, username, display) {
  await p.page.getByTestId('username').fill(username);
  await p.page.getByTestId('password').fill(PASSWORD);
  await p.page.getByTestId('auth-submit').click();
  await p.page.getByTestId('me-name').filter({ hasText: display }).waitFor();
}

async function send(p, text) {
  await p.page.getByTestId('composer-text').fill(text);
  await p.page.getByTestId('composer-text').press('Enter');
}

const channel = (p, name) => p.page.getByTestId('channel').filter({ hasText: name });
const message = (p, text) => p.page.getByTestId('message').filter({ hasText: text });

try {
  const alice = await person('alice');
  const bob = await person('bob');
  const bob2 = await person('bob-laptop');

  step('alice makes a guild with #general and #other; bob joins by link, on two browsers');
  await signUp(alice, 'alice', 'Alice');
  await alice.page.getByTestId('guild-add').click();
  await alice.page.getByTestId('guild-name-input').fill('Book club');
  await alice.page.getByTestId('dialog-ok').click();
  await channel(alice, 'general').waitFor();
  await alice.page.getByTestId('channel-add').click();
  await alice.page.getByTestId('channel-name-input').fill('other');
  await alice.page.getByTestId('dialog-ok').click();
  await channel(alice, 'other').waitFor();
  await channel(alice, 'general').click();
  await alice.page.getByTestId('invite-create').click();
  await alice.page.waitForFunction(() => document.querySelector('[data-testid="invite-link"]').value !== '');
  const link = await alice.page.getByTestId('invite-link').inputValue();
  await signUp(bob, 'bob', 'Bob');
  await bob.page.goto(link);
  await bob.page.getByTestId('dialog').filter({ hasText: 'Join Book club' }).waitFor();
  await bob.page.getByTestId('dialog-ok').click();
  await channel(bob, 'general').waitFor();
  await signIn(bob2, 'bob', 'Bob');
  for (const p of [bob, bob2]) {
    await channel(p, 'other').click();
    await p.page.getByTestId('channel-name').filter({ hasText: 'other' }).waitFor();
  }
  const bobId = await bob.page.evaluate(async () => (await import('/web/state.js')).s.me.id);

  step('alice writes three messages in #general, one mentioning bob: both of bob\'s browsers count them');
  await send(alice, 'First news');
  await send(alice, `Hey <@${bobId}>, your turn`);
  await send(alice, 'Third news');
  for (const p of [bob, bob2]) {
    await channel(p, 'general').and(p.page.locator('[data-unread="true"]')).waitFor();
    await channel(p, 'general').getByTestId('channel-mentions').filter({ hasText: '1' }).waitFor();
    await p.page.getByTestId('guild-mentions').filter({ hasText: '1' }).waitFor();
  }

  step('bob opens #general: the divider stands before the first new message; his laptop clears within a second');
  await channel(bob, 'general').click();
  await message(bob, 'Third news').waitFor();
  const before = await bob.page.evaluate(() => {
    const items = [...document.querySelectorAll('[data-testid="messages"] > li')];
    const at = items.findIndex((li) => li.dataset.testid === 'new-divider');
    return at >= 0 ? items[at + 1]?.textContent : null;
  });
  if (!before || !before.includes('First news')) throw new Error(`the divider is not before the first new message: ${before}`);
  const cleared = Date.now();
  await channel(bob2, 'general').and(bob2.page.locator('[data-unread="false"]')).waitFor({ timeout: 3000 });
  await bob2.page.getByTestId('guild-mentions').waitFor({ state: 'detached', timeout: 3000 });
  console.log(`measure: read-sync-ms ${Date.now() - cleared}`);

  step('more news while bob is away; "Mark as read" clears the guild');
  await channel(bob, 'other').click();
  await send(alice, 'Fourth news');
  await channel(bob, 'general').and(bob.page.locator('[data-unread="true"]')).waitFor();
  await bob.page.getByTestId('guild-read').click();
  await channel(bob, 'general').and(bob.page.locator('[data-unread="false"]')).waitFor();
  await bob.page.reload();
  await channel(bob, 'general').and(bob.page.locator('[data-unread="false"]')).waitFor();

  step('bob sets #general to "nothing", muted for an hour: kept across a reload and on his laptop');
  await channel(bob, 'general').click();
  await bob.page.getByTestId('channel-notify').click();
  await bob.page.getByTestId('notify-level').selectOption('nothing');
  await bob.page.getByTestId('notify-mute').selectOption('3600');
  await bob.page.getByTestId('dialog-ok').click();
  await bob.page.getByTestId('dialog').waitFor({ state: 'hidden' });
  await bob.page.reload();
  await channel(bob, 'general').click();
  await bob.page.getByTestId('channel-notify').click();
  const level = await bob.page.getByTestId('notify-level').inputValue();
  if (level !== 'nothing') throw new Error(`the channel's level came back as ${level}`);
  await bob.page.locator('#dialog-cancel').click();
  await bob2.page.waitForFunction(async () => {
    const { resolved } = await import('/web/notifications.js');
    const { s } = await import('/web/state.js');
    const general = [...s.guilds.values()][0].channels.find((c) => c.name === 'general');
    const r = resolved(general.id, general.guild_id || [...s.guilds.keys()][0]);
    return r.level === 'nothing' && r.muted;
  }, null, { timeout: 5000 });

  if (problems.length) throw new Error(problems.join('\n'));
  console.log('all steps passed');
  await browser.close();
} catch (e) {
  console.error(`FAILED: ${e.message}`);
  if (problems.length) console.error(problems.join('\n'));
  for (const p of people) {
    const seen = await p.page.evaluate(() => `${document.querySelector('#channel-name')?.textContent} | ${document.querySelector('#channel-list')?.innerText} | ${document.querySelector('#messages')?.innerText} | ${document.querySelector('#chat-error')?.textContent}`).catch((err) => err.message);
    console.error(`${p.name} sees: ${seen.replace(/\s+/g, ' ').slice(0, 400)}`);
  }
  await browser.close();
  process.exit(1);
}
