// End-to-end test of the web client in Debian's Chromium (playwright-core), against a
// real Hearth server: node tests/js/web/chat.mjs ORIGIN
// Two people sign up, one invites the other by link, they chat; edits, deletions,
// reactions, an image, typing, reload, sign out and in again (key backup), errors.
// Exits non-zero with the reason on the first thing a user would see go wrong.
import { chromium } from 'playwright-core';

const origin = process.argv[2];
if (!origin) throw new Error('usage: chat.mjs ORIGIN');
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
  // Content Security Policy violations and script errors fail the test.
  await page.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (e) => {
      console.error(`CSP violation: ${e.violatedDirective} ${e.blockedURI}`);
    });
  });
  page.on('console', (m) => {
    if (m.type() === 'error' && !/status of 4\d\d/.test(m.text())) problems.push(`${name}: console error: ${m.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`${name}: page error: ${e.stack || e.message}`));
  return { name, context, page };
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

async function sendMessage(p, text) {
  await p.page.getByTestId('composer-text').fill(text);
  await p.page.getByTestId('composer-text').press('Enter');
}

function message(p, text) {
  return p.page.getByTestId('message').filter({ hasText: text });
}

async function expectGone(locator, what) {
  await locator.first().waitFor({ state: 'detached', timeout: TIMEOUT }).catch(() => {
    throw new Error(`${what} is still shown`);
  });
}

try {
  const alice = await person('alice');
  const bob = await person('bob');

  step('alice signs up');
  await alice.page.goto(origin);
  await signUp(alice, 'alice', 'Alice');
  if ((await alice.page.getByTestId('me-name').getAttribute('data-identity')) !== 'present') {
    throw new Error('alice has no identity key after signing up');
  }

  step('alice creates a guild and invites bob');
  await alice.page.getByTestId('guild-add').click();
  await alice.page.getByTestId('guild-name-input').fill('Book club');
  await alice.page.getByTestId('dialog-ok').click();
  await alice.page.getByTestId('guild-name').filter({ hasText: 'Book club' }).waitFor();
  await alice.page.getByTestId('channel').filter({ hasText: 'general' }).first().waitFor();
  await alice.page.getByTestId('invite-create').click();
  await alice.page.waitForFunction(() => document.querySelector('[data-testid="invite-link"]').value !== '');
  const link = await alice.page.getByTestId('invite-link').inputValue();
  if (!link.startsWith(`${origin}/invite/`)) throw new Error(`invite link ${link}`);

  step('bob opens the invite link, signs up and joins');
  await bob.page.goto(link);
  await bob.page.getByTestId('invite-preview').filter({ hasText: 'Book club' }).waitFor();
  await signUp(bob, 'bob', 'Bob');
  await bob.page.getByTestId('dialog').filter({ hasText: 'Join Book club' }).waitFor();
  await bob.page.getByTestId('dialog-ok').click();
  await bob.page.getByTestId('guild-name').filter({ hasText: 'Book club' }).waitFor();
  await bob.page.getByTestId('connection').and(bob.page.locator('.online')).waitFor();
  await alice.page.getByTestId('connection').and(alice.page.locator('.online')).waitFor();

  step('they chat, live');
  await sendMessage(alice, 'Welcome, Bob!');
  await message(bob, 'Welcome, Bob!').waitFor();
  await bob.page.getByTestId('composer-text').pressSequentially('Thanks, ', { delay: 20 });
  await alice.page.getByTestId('typing').filter({ hasText: 'Bob is typing' }).waitFor();
  await bob.page.getByTestId('composer-text').press('End');
  await bob.page.getByTestId('composer-text').pressSequentially('Alice <3', { delay: 5 });
  await bob.page.getByTestId('composer-text').press('Enter');
  await message(alice, 'Thanks, Alice <3').waitFor();
  const author = await message(alice, 'Thanks, Alice <3').getByTestId('message-author').textContent();
  if (author !== 'Bob') throw new Error(`the message's author shows as ${author}`);

  step('HTML in a message is text');
  const trap = '<img src=x onerror="window.__pwned=1"><b>bold?</b>';
  await sendMessage(bob, trap);
  await message(alice, 'bold?').waitFor();
  const shown = await message(alice, 'bold?').getByTestId('message-content').textContent();
  if (shown !== trap) throw new Error(`the message shows as ${JSON.stringify(shown)}`);
  if (await alice.page.evaluate(() => window.__pwned)) throw new Error('message HTML ran');
  if (await message(alice, 'bold?').locator('img, b').count()) throw new Error('message HTML became elements');

  step('alice edits and deletes; bob sees both');
  await sendMessage(alice, 'A typo here');
  await message(alice, 'A typo here').waitFor();
  await message(bob, 'A typo here').waitFor();
  await message(alice, 'A typo here').hover();
  await message(alice, 'A typo here').getByTestId('edit').click();
  await alice.page.getByTestId('edit-text').fill('No typo any more');
  await alice.page.getByTestId('dialog-ok').click();
  await message(bob, 'No typo any more').getByTestId('edited').waitFor();
  await expectGone(message(bob, 'A typo here'), 'the old text');
  await message(alice, 'No typo any more').hover();
  await message(alice, 'No typo any more').getByTestId('delete').click();
  await expectGone(message(bob, 'No typo any more'), 'the deleted message (for bob)');
  await expectGone(message(alice, 'No typo any more'), 'the deleted message (for alice)');

  step('bob reacts; alice sees it');
  await message(bob, 'Welcome, Bob!').hover();
  await message(bob, 'Welcome, Bob!').getByTestId('react').filter({ hasText: '🎉' }).click();
  await message(alice, 'Welcome, Bob!').getByTestId('reaction').filter({ hasText: '🎉 1' }).waitFor();

  step('alice sends a picture; bob sees it');
  // A 1x1 PNG.
  const png = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==', 'base64');
  await alice.page.getByTestId('attach').setInputFiles({ name: 'dot.png', mimeType: 'image/png', buffer: png });
  await alice.page.getByTestId('composer-text').fill('a picture');
  await alice.page.getByTestId('send').click();
  const img = message(bob, 'a picture').getByTestId('attachment-image');
  await img.waitFor();
  await bob.page.waitForFunction((el) => el.complete && el.naturalWidth === 1, await img.elementHandle());

  step('a message over the limit shows the server\'s error');
  await alice.page.getByTestId('composer-text').fill('x'.repeat(4001));
  await alice.page.getByTestId('send').click();
  await alice.page.getByTestId('chat-error').filter({ hasText: /4000|too long|at most/ }).waitFor();
  await alice.page.getByTestId('composer-text').fill('');

  step('voice: alice makes a voice channel and joins it; bob sees her there and joins');
  await alice.page.getByTestId('channel-add').click();
  await alice.page.getByTestId('channel-name-input').fill('Lounge');
  await alice.page.getByTestId('channel-kind').selectOption('voice');
  await alice.page.getByTestId('dialog-ok').click();
  await alice.page.getByTestId('channel').filter({ hasText: 'Lounge' }).click();
  await alice.page.getByTestId('dialog-ok').filter({ hasText: 'Join voice' }).click();
  await alice.page.getByTestId('voice-connected').filter({ hasText: 'Lounge' }).waitFor();
  await bob.page.getByTestId('channel').filter({ hasText: 'Lounge' }).click();
  await bob.page.getByTestId('dialog').filter({ hasText: 'In this voice channel: Alice' }).waitFor();
  await bob.page.getByTestId('dialog-ok').click();
  await bob.page.getByTestId('voice-connected').waitFor();
  await alice.page.getByTestId('voice-mute').click();
  await alice.page.getByTestId('voice-mute').filter({ hasText: 'Unmute' }).waitFor();
  await alice.page.getByTestId('voice-leave').click();
  await alice.page.getByTestId('voice-connected').waitFor({ state: 'detached' });
  await bob.page.getByTestId('voice-leave').click();

  step('a reload keeps alice signed in, with the history');
  await alice.page.reload();
  await alice.page.getByTestId('me-name').filter({ hasText: 'Alice' }).waitFor();
  await message(alice, 'Thanks, Alice <3').waitFor();

  step('alice signs out');
  await alice.page.getByTestId('settings-open').click();
  await alice.page.getByTestId('sign-out').click();
  await alice.page.getByTestId('auth-form').waitFor();
  await alice.page.reload();
  await alice.page.getByTestId('auth-form').waitFor();

  step('a wrong password is refused');
  const again = await person('alice-again');
  await again.page.goto(origin);
  await again.page.getByTestId('username').fill('alice');
  await again.page.getByTestId('password').fill('not the password');
  await again.page.getByTestId('auth-submit').click();
  await again.page.getByTestId('auth-error').filter({ hasText: /./ }).waitFor();
  if (await again.page.getByTestId('me-name').isVisible()) throw new Error('signed in with a wrong password');

  step('signing in on a new browser recovers the identity key from the backup');
  await again.page.getByTestId('password').fill(PASSWORD);
  await again.page.getByTestId('auth-submit').click();
  await again.page.getByTestId('me-name').filter({ hasText: 'Alice' }).waitFor();
  if ((await again.page.getByTestId('me-name').getAttribute('data-identity')) !== 'present') {
    throw new Error(`no identity key after signing in: ${await again.page.getByTestId('me-name').getAttribute('title')}`);
  }
  await message(again, 'Welcome, Bob!').waitFor();

  step('a tablet is linked from the signed-in browser, without a password');
  const tablet = await person('alice-tablet');
  await tablet.page.goto(origin);
  await tablet.page.getByTestId('username').fill('alice');
  await tablet.page.getByTestId('link-start').click();
  await tablet.page.getByTestId('link-code').filter({ hasText: /^[0-9A-Z]{4}-[0-9A-Z]{4}$/ }).waitFor();
  const code = await tablet.page.getByTestId('link-code').textContent();
  const jkt = await tablet.page.getByTestId('link-jkt').textContent();
  await again.page.getByTestId('settings-open').click();
  await again.page.getByTestId('link-approve').click();
  await again.page.getByTestId('link-code-input').fill(code.toLowerCase());
  await again.page.getByTestId('dialog-ok').click();
  await again.page.getByTestId('link-device').filter({ hasText: jkt }).waitFor();
  await again.page.getByTestId('dialog-ok').click();
  await tablet.page.getByTestId('me-name').filter({ hasText: 'Alice' }).waitFor();
  await message(tablet, 'Welcome, Bob!').waitFor();

  if (problems.length) throw new Error(problems.join('\n'));
  console.log('all steps passed');
  await browser.close();
} catch (e) {
  console.error(`FAILED: ${e.message}`);
  if (problems.length) console.error(problems.join('\n'));
  await browser.close();
  process.exit(1);
}
