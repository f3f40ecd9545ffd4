// The box out of the box, in Debian's Chromium (playwright-core):
// node tests/js/web/appliance.mjs ORIGIN_A ORIGIN_B SETUP_CODE DOWNLOAD_DIR
// (started by tests/it/web_appliance.rs, which answers `control: restore PATH` with `ok`
// once the archive is restored into a fresh data directory served where A was).
// A fresh box A is claimed with its setup code; its owner makes a guild and a message,
// adds B in the console after comparing B's fingerprint, sees the owner among the
// console's users, makes a backup in the console and downloads it. Restored on another
// fresh box at A's address, the owner's page shows the same guild, message and peer.
// Exits non-zero with the reason on the first thing a user would see go wrong.
import { launch, people, step } from './lib.mjs';
import readline from 'node:readline';
import path from 'node:path';
import fs from 'node:fs';
import crypto from 'node:crypto';

const [A, B, code, downloads] = process.argv.slice(2);
if (!A || !B || !code || !downloads) throw new Error('usage: appliance.mjs ORIGIN_A ORIGIN_B SETUP_CODE DOWNLOAD_DIR');
const PASSWORD = 'correct horse battery';

const lines = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]();
async function control(command) {
  console.log(`control: ${command}`);
  const { value } = await lines.next();
  if (value !== 'ok') throw new Error(`control "${command}": ${value}`);
}

let restarting = false;
const browser = await launch();
// While the box is stopped for the restore, the page's failed requests are expected.
const { problems, person } = people(browser, { contextOptions: { acceptDownloads: true }, quiet: () => restarting });

const words = (text) => (text || '').replace(/\s+/g, '');

async function openSection(p, title) {
  await p.getByTestId('admin-tab').and(p.locator(`[data-section="${title}"]`)).click();
  return p.getByTestId('admin-section-body').and(p.locator(`[data-section="${title}"]`));
}

const owner = await person('owner');
const p = owner.page;
try {
  step('A, fresh, is claimed with its setup code; the owner is signed in');
  await p.goto(A);
  await p.getByTestId('setup').waitFor();
  await p.getByTestId('setup-code').fill(code);
  await p.getByTestId('setup-name').fill('Family box');
  await p.getByTestId('setup-registration').selectOption('invite');
  await p.getByTestId('setup-username').fill('owner');
  await p.getByTestId('setup-password').fill(PASSWORD);
  await p.getByTestId('setup-submit').click();
  await p.getByTestId('me-name').filter({ hasText: 'owner' }).waitFor();

  step('the owner makes a guild and says hello');
  await p.getByTestId('guild-add').click();
  await p.getByTestId('guild-name-input').fill('Family');
  await p.getByTestId('dialog-ok').click();
  await p.getByTestId('guild-name').filter({ hasText: 'Family' }).waitFor();
  await p.getByTestId('channel').filter({ hasText: 'general' }).first().waitFor();
  await p.getByTestId('composer-text').fill('Hello before the backup');
  await p.getByTestId('composer-text').press('Enter');
  await p.getByTestId('message').filter({ hasText: 'Hello before the backup' }).waitFor();

  step('the console: the owner is listed as an administrator, the box under its name');
  await p.getByTestId('admin-open').click();
  const users = await openSection(p, 'Users');
  await users.getByTestId('user').filter({ hasText: 'owner' }).filter({ hasText: 'administrator' }).waitFor();
  await openSection(p, 'Box');
  await p.waitForFunction(() => document.querySelector('[data-testid="box-settings-name"]')?.value === 'Family box');

  step('the owner adds B after comparing the fingerprint A fetched with the one B publishes');
  // What B's owner would read out: B's own description of itself, read at B.
  const atB = await owner.context.newPage();
  await atB.goto(`${B}/.well-known/hearth`);
  const published = JSON.parse(await atB.locator('body').innerText());
  await atB.close();
  const peers = await openSection(p, 'Peers');
  await peers.getByTestId('admin-peer-url').fill(B);
  await peers.getByTestId('admin-peer-fetch').click();
  await peers.getByTestId('admin-peer-compare').waitFor();
  const found = words(await peers.getByTestId('admin-peer-found-fingerprint').textContent());
  // The fingerprint B's owner reads on their console: SHA-256 of B's server key.
  const expected = crypto.createHash('sha256').update(Buffer.from(published.server_key, 'base64url')).digest('hex');
  if (found !== expected) throw new Error(`A fetched fingerprint ${found}; B's key has ${expected}`);
  await peers.getByTestId('admin-peer-confirm').click();
  await peers.getByTestId('admin-peer').and(p.locator(`[data-origin="${B}"]`)).waitFor();

  step('a backup made in the console is downloaded');
  const backups = await openSection(p, 'Backups');
  await backups.getByTestId('backup-now').click();
  const made = backups.getByTestId('backup').first();
  await made.waitFor();
  const [download] = await Promise.all([
    p.waitForEvent('download'),
    made.getByTestId('backup-download').click(),
  ]);
  const name = download.suggestedFilename();
  if (!/^hearth-\d{8}-\d{6}\.tar\.gz$/.test(name)) throw new Error(`the download is named ${name}`);
  const archive = path.join(downloads, name);
  await download.saveAs(archive);
  if (fs.statSync(archive).size < 1000) throw new Error(`the archive is ${fs.statSync(archive).size} bytes`);
  await p.locator('#dialog-cancel').click();

  step('restored on another fresh box where A was, the owner finds everything again');
  restarting = true;
  await control(`restore ${archive}`);
  await p.reload();
  restarting = false;
  await p.getByTestId('me-name').filter({ hasText: 'owner' }).waitFor();
  await p.getByTestId('guild-name').filter({ hasText: 'Family' }).waitFor();
  await p.getByTestId('message').filter({ hasText: 'Hello before the backup' }).waitFor();
  await p.getByTestId('admin-open').click();
  const after = await openSection(p, 'Peers');
  await after.getByTestId('admin-peer').and(p.locator(`[data-origin="${B}"]`)).waitFor();
  const info = await p.evaluate(() => fetch('/.well-known/hearth').then((r) => r.json()));
  if (!info.claimed || info.name !== 'Family box') throw new Error(`the restored box: ${JSON.stringify(info)}`);

  if (problems.length) throw new Error(problems.join('\n'));
  console.log('all steps passed');
  await browser.close();
  // Standard input (the control channel) would keep node running.
  process.exit(0);
} catch (e) {
  console.error(`FAILED: ${e.message}`);
  if (problems.length) console.error(problems.join('\n'));
  const seen = await p.evaluate(() => `${document.querySelector('#channel-name')?.textContent} | ${document.querySelector('#messages')?.innerText} | dialog: ${document.querySelector('#dialog')?.open ? document.querySelector('#dialog').innerText : ''}`).catch((err) => err.message);
  console.error(`owner sees: ${seen.replace(/\s+/g, ' ').slice(0, 600)}`);
  await browser.close();
  process.exit(1);
}
