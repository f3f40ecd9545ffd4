// Direct messages across three federated boxes in Debian's Chromium (playwright-core):
// node tests/js/web/dms.mjs ORIGIN_A ORIGIN_B ORIGIN_C (started by tests/it/web_dms.rs,
// which answers `control: stop A` / `control: start A` with `ok` on standard input)
// alice (home A) messages bob (home B) from his name in a guild of A; bob's two browsers
// list the DM unread; he reads it in one and the other clears; they write both ways; then
// they call each other in the DM's voice room; the people picker finds bob across her
// boxes and opens the same DM; a group DM takes in carol (home C), who then is removed;
// with A stopped, bob's DM is listed as unreachable; bob blocks alice and her messages hide behind "Blocked message";
// her next DM to him is refused with the reason shown.
// Exits non-zero with the reason on the first thing a user would see go wrong.
import { chromium } from 'playwright-core';
import readline from 'node:readline';

const [A, B, C] = process.argv.slice(2);
if (!A || !B || !C) throw new Error('usage: dms.mjs ORIGIN_A ORIGIN_B ORIGIN_C');

// The whole script stops itself rather than hang the test that waits for it.
const BUDGET_MS = 120000;
setTimeout(() => {
  console.error(`FAILED: the script ran over ${BUDGET_MS} ms`);
  process.exit(1);
}, BUDGET_MS).unref();

// The control channel to the Rust test.
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
  if ((await answer).trim() !== 'ok') throw new Error(`control: ${command} failed`);
}
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
let aDown = false;
const people = [];
async function person(name, origin) {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT);
  page.on('console', (m) => {
    // While A is stopped on purpose, the browser's own errors for it are expected.
    const expected = aDown && /net::ERR_|WebSocket connection to .* failed/.test(m.text());
    if (m.type() === 'error' && !/status of 4\d\d/.test(m.text()) && !expected) problems.push(`${name}: console error: ${m.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`${name}: page error: ${e.message}`));
  await page.goto(origin);
  const p = { name, context, page };
  people.push(p);
  return p;
}

const step = (text) => console.log(`step: ${text}`);

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

const message = (p, text) => p.page.getByTestId('message').filter({ hasText: text });
const dmItem = (p, text) => p.page.getByTestId('dm').filter({ hasText: text });

try {
  const alice = await person('alice', A);
  const bob = await person('bob', B);

  step('alice (home A) makes a guild; bob (home B) joins it with its link');
  await signUp(alice, 'alice', 'Alice');
  await alice.page.getByTestId('guild-add').click();
  await alice.page.getByTestId('guild-name-input').fill('Porch');
  await alice.page.getByTestId('dialog-ok').click();
  await alice.page.getByTestId('channel').filter({ hasText: 'general' }).waitFor();
  await alice.page.getByTestId('invite-create').click();
  await alice.page.waitForFunction(() => document.querySelector('[data-testid="invite-link"]').value !== '');
  const link = await alice.page.getByTestId('invite-link').inputValue();
  await signUp(bob, 'bob', 'Bob');
  await bob.page.getByTestId('guild-join').click();
  await bob.page.getByTestId('join-input').fill(link);
  await bob.page.getByTestId('dialog-ok').click();
  await bob.page.getByTestId('dialog').filter({ hasText: 'Join Porch' }).waitFor();
  await bob.page.getByTestId('dialog-ok').click();
  await bob.page.getByTestId('guild-name').filter({ hasText: 'Porch' }).waitFor();
  const laptop = await person('bob-laptop', B);
  await signIn(laptop, 'bob', 'Bob');

  step('alice opens bob\'s card in Porch and messages him: the DM is hosted by her home');
  await alice.page.getByTestId('member').filter({ hasText: 'Bob' }).getByRole('button').click();
  await alice.page.getByTestId('dialog').filter({ hasText: 'Bob' }).waitFor();
  await alice.page.getByTestId('dialog-ok').click();
  await alice.page.getByTestId('channel-name').filter({ hasText: 'Bob' }).waitFor();
  await send(alice, 'Are you coming tonight?');
  await message(alice, 'Are you coming tonight?').waitFor();

  step('both of bob\'s browsers list the DM, unread');
  for (const p of [bob, laptop]) {
    await p.page.getByTestId('dm-home').and(p.page.locator('[data-unread="true"]')).waitFor();
    await p.page.getByTestId('dm-home').click();
    await dmItem(p, 'Alice').and(p.page.locator('[data-unread="true"]')).waitFor();
  }

  step('bob reads it in one browser; the other clears within a second; he answers');
  await laptop.page.getByTestId('guild').first().click();
  await laptop.page.getByTestId('dm-home').and(laptop.page.locator('[data-unread="true"]')).waitFor();
  await dmItem(bob, 'Alice').click();
  await message(bob, 'Are you coming tonight?').waitFor();
  const read = Date.now();
  await laptop.page.getByTestId('dm-home').and(laptop.page.locator('[data-unread="false"]')).waitFor({ timeout: 3000 });
  console.log(`measure: dm-read-sync-ms ${Date.now() - read}`);
  await send(bob, 'Yes, with cake');
  await message(alice, 'Yes, with cake').waitFor();

  step('a call in the DM: alice calls from her home, bob joins from his');
  await alice.page.getByTestId('dm-call').click();
  await alice.page.getByTestId('dialog-ok').filter({ hasText: 'Join voice' }).click();
  await alice.page.getByTestId('voice-connected').waitFor();
  await bob.page.getByTestId('dm-call').click();
  await bob.page.getByTestId('dialog').filter({ hasText: 'Alice' }).waitFor();
  await bob.page.getByTestId('dialog-ok').filter({ hasText: 'Join voice' }).click();
  await bob.page.getByTestId('voice-connected').waitFor();
  await alice.page.getByTestId('voice-leave').click();
  await bob.page.getByTestId('voice-leave').click();
  await bob.page.getByTestId('voice-connected').waitFor({ state: 'detached' });

  step('alice finds bob with the people picker, which searches her boxes, and gets the same DM');
  await alice.page.getByTestId('dm-home').click();
  await alice.page.getByTestId('dm-new').click();
  await alice.page.getByTestId('dm-search').fill('bob');
  await alice.page.getByTestId('dm-result').first().getByTestId('dm-pick').click();
  await alice.page.getByTestId('dm-picked').filter({ hasText: 'Bob' }).waitFor();
  await alice.page.getByTestId('dialog-ok').click();
  await alice.page.getByTestId('channel-name').filter({ hasText: 'Bob' }).waitFor();

  step('a group DM "Trio" takes in carol of box C, found by the picker through alice\'s home; carol lists it; alice removes her');
  const carol = await person('carol', C);
  await signUp(carol, 'carol', 'Carol');
  await alice.page.getByTestId('dm-new').click();
  for (const who of ['bob', 'carol']) {
    await alice.page.getByTestId('dm-search').fill(who);
    await alice.page.getByTestId('dm-result').filter({ hasText: who }).first().getByTestId('dm-pick').click();
  }
  await alice.page.getByTestId('dm-picked').filter({ hasText: 'Carol' }).waitFor();
  await alice.page.getByTestId('dm-name').fill('Trio');
  await alice.page.getByTestId('dialog-ok').click();
  await alice.page.getByTestId('channel-name').filter({ hasText: 'Trio' }).waitFor();
  await send(alice, 'Welcome to the trio');
  await carol.page.getByTestId('dm-home').click();
  await dmItem(carol, 'Trio').click();
  await message(carol, 'Welcome to the trio').waitFor();
  await alice.page.getByTestId('dm-manage').click();
  await alice.page.getByTestId('dm-member').filter({ hasText: 'Carol' }).getByTestId('dm-remove').click();
  await alice.page.getByTestId('dm-member').filter({ hasText: 'Carol' }).waitFor({ state: 'detached' });
  await alice.page.locator('#dialog-cancel').click();
  await dmItem(carol, 'Trio').waitFor({ state: 'detached' });

  step('A, which hosts the DMs, is stopped: bob\'s DMs stay listed, as unreachable; A returns');
  aDown = true;
  await control('stop A');
  await bob.page.reload();
  await bob.page.getByTestId('dm-home').click();
  await dmItem(bob, 'Alice').and(bob.page.locator('[data-reachable="false"]')).waitFor();
  await control('start A');
  await dmItem(bob, 'Alice').and(bob.page.locator('[data-reachable="true"]')).waitFor({ timeout: 30000 });
  aDown = false;

  step('bob blocks alice: her messages hide behind "Blocked message" until he asks');
  await dmItem(bob, 'Alice').click();
  await bob.page.getByTestId('member').filter({ hasText: 'Alice' }).getByRole('button').click();
  await bob.page.getByTestId('profile-block').click();
  await bob.page.getByTestId('profile-block').filter({ hasText: 'Unblock' }).waitFor();
  await bob.page.locator('#dialog-cancel').click();
  await bob.page.getByTestId('blocked-message').first().waitFor();
  if (await message(bob, 'Are you coming tonight?').count()) throw new Error('a blocked message is shown');
  await bob.page.getByTestId('blocked-show').first().click();
  await message(bob, 'Are you coming tonight?').waitFor();

  step('alice\'s next DM to bob (a group with carol) is refused, and she is told why');
  await alice.page.getByTestId('dm-home').click();
  await alice.page.getByTestId('dm-new').click();
  for (const who of ['bob', 'carol']) {
    await alice.page.getByTestId('dm-search').fill(who);
    await alice.page.getByTestId('dm-result').filter({ hasText: who }).first().getByTestId('dm-pick').click();
  }
  await alice.page.getByTestId('dm-picked').filter({ hasText: 'Carol' }).waitFor();
  await alice.page.getByTestId('dm-name').fill('Again');
  await alice.page.getByTestId('dialog-ok').click();
  await alice.page.locator('#dialog-error').filter({ hasText: 'does not accept DMs from you' }).waitFor();
  await alice.page.locator('#dialog-cancel').click();
  if (await dmItem(alice, 'Again').count()) throw new Error('a refused DM is listed');

  if (problems.length) throw new Error(problems.join('\n'));
  console.log('all steps passed');
  await browser.close();
  // Standard input (the control channel) would keep node running.
  process.exit(0);
} catch (e) {
  console.error(`FAILED: ${e.message}`);
  if (problems.length) console.error(problems.join('\n'));
  for (const p of people) {
    const seen = await p.page.evaluate(() => `${document.querySelector('#channel-name')?.textContent} | ${document.querySelector('#channel-list')?.innerText} | ${document.querySelector('#messages')?.innerText} | ${document.querySelector('#chat-error')?.textContent} | dialog: ${document.querySelector('#dialog')?.open ? document.querySelector('#dialog').innerText : ''}`).catch((err) => err.message);
    console.error(`${p.name} sees: ${seen.replace(/\s+/g, ' ').slice(0, 500)}`);
  }
  await browser.close();
  process.exit(1);
}
