// Direct messages across two federated boxes in Debian's Chromium (playwright-core):
// node tests/js/web/dms.mjs ORIGIN_A ORIGIN_B
// alice (home A) messages bob (home B) from his name in a guild of A; bob's two browsers
// list the DM unread; he reads it in one and the other clears; they write both ways; the
// they call each other in the DM's voice room; the people picker finds bob across her
// boxes and opens the same DM; bob blocks alice and her messages hide behind "Blocked message".
// Exits non-zero with the reason on the first thing a user would see go wrong.
import { chromium } from 'playwright-core';

const [A, B] = process.argv.slice(2);
if (!A || !B) throw new Error('usage: dms.mjs ORIGIN_A ORIGIN_B');
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
const people = [];
async function person(name, origin) {
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

  if (problems.length) throw new Error(problems.join('\n'));
  console.log('all steps passed');
  await browser.close();
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
