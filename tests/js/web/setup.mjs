// The first boot of a box, in Debian's Chromium (playwright-core), against a fresh Hearth
// server: node tests/js/web/setup.mjs ORIGIN SETUP_CODE
// The page offers "Set up this Hearth"; a wrong setup code is shown as an error; the
// right one makes the owner, who is signed in, is an administrator (the console's
// accounts section lists them so), creates a guild and sends a message. A stranger then
// sees the sign-in page with registration by invite only; with the owner's invite link
// someone creates an account and is in the guild at once; and the owner's reset link
// sets a new password in another browser.
import { launch, people, step } from './lib.mjs';

const [origin, code] = process.argv.slice(2);
if (!origin || !code) throw new Error('usage: setup.mjs ORIGIN SETUP_CODE');
const PASSWORD = 'correct horse battery';

const browser = await launch();
const { problems, person } = people(browser);

try {
  const owner = await person('owner');
  const p = owner.page;

  step('a fresh box shows "Set up this Hearth" with its certificate check');
  await p.goto(origin);
  await p.getByTestId('setup').waitFor();
  if (await p.getByTestId('auth-form').isVisible()) throw new Error('the sign-in form shows on a fresh box');
  await p.getByTestId('setup-fingerprint').filter({ hasText: 'plain HTTP' }).waitFor();

  step('a wrong setup code is refused, with a clear error');
  await p.getByTestId('setup-code').fill('AAAA-BBBB-CCCC');
  await p.getByTestId('setup-name').fill('Family box');
  await p.getByTestId('setup-registration').selectOption('invite');
  await p.getByTestId('setup-username').fill('owner');
  await p.getByTestId('setup-password').fill(PASSWORD);
  await p.getByTestId('setup-submit').click();
  await p.getByTestId('setup-error').filter({ hasText: 'not this box\'s setup code' }).waitFor();

  step('the right code makes the owner, signed in');
  await p.getByTestId('setup-code').fill(code.toLowerCase());
  await p.getByTestId('setup-submit').click();
  await p.getByTestId('me-name').filter({ hasText: 'owner' }).waitFor();
  if ((await p.getByTestId('me-name').getAttribute('data-identity')) !== 'present') {
    throw new Error('the owner has no identity key after the setup');
  }
  const info = await p.evaluate(() => fetch('/.well-known/hearth').then((r) => r.json()));
  if (!info.claimed || info.setup || info.name !== 'Family box' || info.registration !== 'invite') {
    throw new Error(`the box after setup: ${JSON.stringify(info)}`);
  }

  step('the owner creates a guild and sends a message');
  await p.getByTestId('guild-add').click();
  await p.getByTestId('guild-name-input').fill('Family');
  await p.getByTestId('dialog-ok').click();
  await p.getByTestId('guild-name').filter({ hasText: 'Family' }).waitFor();
  await p.getByTestId('channel').filter({ hasText: 'general' }).first().waitFor();
  await p.getByTestId('composer-text').fill('Hello from the owner');
  await p.getByTestId('composer-text').press('Enter');
  await p.getByTestId('message').filter({ hasText: 'Hello from the owner' }).waitFor();

  step('the console\'s sections, standalone: the owner is an administrator');
  await p.evaluate(async () => {
    const { s } = await import('/web/state.js');
    const admin = await import('/web/admin-users.js');
    const box = document.createElement('section');
    box.dataset.testid = 'console-box';
    const users = document.createElement('section');
    users.dataset.testid = 'console-users';
    document.body.append(box, users);
    await admin.renderBoxSection(box, s.api);
    await admin.renderUsersSection(users, s.api);
  });
  const ownerRow = p.getByTestId('user').filter({ hasText: 'owner' });
  await ownerRow.filter({ hasText: 'administrator' }).waitFor();
  if ((await p.getByTestId('box-settings-name').inputValue()) !== 'Family box') throw new Error('the box section shows another name');
  if ((await p.getByTestId('box-settings-registration').inputValue()) !== 'invite') throw new Error('the box section shows another mode');

  step('the last administrator cannot step down: the refusal shows');
  await ownerRow.getByTestId('user-admin').click();
  await p.getByTestId('users-error').filter({ hasText: 'last administrator' }).waitFor();

  step('a stranger sees sign-in, registration by invite only');
  const stranger = await person('stranger');
  await stranger.page.goto(origin);
  await stranger.page.getByTestId('auth-form').waitFor();
  if (await stranger.page.getByTestId('setup').isVisible()) throw new Error('the setup still shows after the claim');
  await stranger.page.getByTestId('auth-note').filter({ hasText: 'invite' }).waitFor();
  if (await stranger.page.getByTestId('tab-signup').isVisible()) throw new Error('"Create account" shows without an invite');

  step('with an invite link of this box, the stranger creates an account and is in the guild');
  await p.getByTestId('invite-create').click();
  await p.waitForFunction(() => document.querySelector('[data-testid="invite-link"]').value !== '');
  const invite = await p.getByTestId('invite-link').inputValue();
  const invited = await person('invited');
  await invited.page.goto(invite);
  await invited.page.getByTestId('invite-preview').filter({ hasText: 'Family' }).waitFor();
  await invited.page.getByTestId('auth-note').filter({ hasText: 'uses your invite' }).waitFor();
  await invited.page.getByTestId('tab-signup').click();
  await invited.page.getByTestId('username').fill('gran');
  await invited.page.getByTestId('display-name').fill('Gran');
  await invited.page.getByTestId('password').fill(PASSWORD);
  await invited.page.getByTestId('auth-submit').click();
  await invited.page.getByTestId('me-name').filter({ hasText: 'Gran' }).waitFor();
  await invited.page.getByTestId('guild-name').filter({ hasText: 'Family' }).waitFor();
  await invited.page.getByTestId('message').filter({ hasText: 'Hello from the owner' }).waitFor();
  if (await invited.page.getByTestId('dialog').isVisible()) throw new Error('a "Join?" question after registering with the invite');

  step('a reset link sets a new password in another browser');
  await ownerRow.getByTestId('user-reset').click();
  await p.getByTestId('reset-link').waitFor();
  const link = await p.getByTestId('reset-link').inputValue();
  if (!link.startsWith(`${origin}/#reset=`)) throw new Error(`reset link ${link}`);
  await stranger.page.goto(link);
  await stranger.page.reload();
  await stranger.page.getByTestId('reset-who').filter({ hasText: 'owner' }).waitFor();
  await stranger.page.getByTestId('reset-password').fill('a brand new password');
  await stranger.page.getByTestId('reset-submit').click();
  await stranger.page.getByTestId('reset-who').filter({ hasText: 'password is set' }).waitFor();
  await stranger.page.getByTestId('reset-done').click();
  await stranger.page.getByTestId('username').fill('owner');
  await stranger.page.getByTestId('password').fill('a brand new password');
  await stranger.page.getByTestId('auth-submit').click();
  await stranger.page.getByTestId('me-name').filter({ hasText: 'owner' }).waitFor();

  if (problems.length) throw new Error(problems.join('\n'));
  console.log('all steps passed');
  await browser.close();
} catch (e) {
  console.error(`FAILED: ${e.stack || e}`);
  if (problems.length) console.error(problems.join('\n'));
  for (const c of browser.contexts()) {
    for (const page of c.pages()) {
      const seen = await page.evaluate(() => `${document.querySelector('#channel-name')?.textContent} | ${document.querySelector('#messages')?.innerText} | ${document.querySelector('#chat-error')?.textContent} | dialog: ${document.querySelector('#dialog')?.open ? document.querySelector('#dialog').innerText : ''}`).catch((err) => err.message);
      console.error(`a page sees: ${seen.replace(/\s+/g, ' ').slice(0, 500)}`);
    }
  }
  await browser.close();
  process.exit(1);
}
