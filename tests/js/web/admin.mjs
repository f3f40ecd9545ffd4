// The administrators' console in Debian's Chromium (playwright-core), against two real
// Hearth boxes A and B: node tests/js/web/admin.mjs A B PASSWORD, started by
// tests/it/web_admin.rs with administrators `root` on A and `rootb` on B (PASSWORD).
// root opens A's console and sees the box's status; rootb reads B's key fingerprint on
// B's console; root adds B as a peer, going through the fingerprint comparison step
// (the fingerprint A fetched must be the one rootb read), sees B listed as reachable with
// no waiting calls, and removes it. bob, who is no administrator, sees no console entry.
// Exits non-zero with the reason on the first thing a user would see go wrong.
import { launch, people, step } from './lib.mjs';

const [A, B, PASSWORD] = process.argv.slice(2);
if (!PASSWORD) throw new Error('usage: admin.mjs A B PASSWORD');
const BUDGET_MS = 55000;
setTimeout(() => {
  console.error(`FAILED: the script ran over ${BUDGET_MS} ms`);
  process.exit(1);
}, BUDGET_MS).unref();

const browser = await launch();
const { problems, person } = people(browser);

async function signIn(p, origin, username) {
  await p.page.goto(origin);
  await p.page.getByTestId('tab-signin').click();
  await p.page.getByTestId('username').fill(username);
  await p.page.getByTestId('password').fill(PASSWORD);
  await p.page.getByTestId('auth-submit').click();
  await p.page.getByTestId('me-name').filter({ hasText: username }).waitFor();
}

async function signUp(p, origin, username) {
  await p.page.goto(origin);
  await p.page.getByTestId('tab-signup').click();
  await p.page.getByTestId('username').fill(username);
  await p.page.getByTestId('display-name').fill(username);
  await p.page.getByTestId('password').fill(PASSWORD);
  await p.page.getByTestId('auth-submit').click();
  await p.page.getByTestId('me-name').filter({ hasText: username }).waitFor();
}

async function openSection(p, title) {
  await p.page.getByTestId('admin-tab').and(p.page.locator(`[data-section="${title}"]`)).click();
  return p.page.getByTestId('admin-section-body').and(p.page.locator(`[data-section="${title}"]`));
}

const words = (text) => (text || '').replace(/\s+/g, '');

try {
  const root = await person('root');
  const rootb = await person('rootb');
  const bob = await person('bob');

  step('root signs in at A and opens the console');
  await signIn(root, A, 'root');
  await root.page.getByTestId('admin-open').waitFor({ state: 'visible' });
  await root.page.getByTestId('admin-open').click();
  const overview = root.page.getByTestId('admin-section-body').and(root.page.locator('[data-section="Overview"]'));
  await overview.and(root.page.locator('[data-loaded="true"]')).waitFor();
  const version = await root.page.getByTestId('admin-version').textContent();
  if (!/^\d+\.\d+\.\d+/.test(version)) throw new Error(`the console shows version ${version}`);
  const health = await root.page.getByTestId('admin-health').textContent();
  if (health !== 'healthy') throw new Error(`the console shows health ${health}`);
  const rss = await root.page.getByTestId('admin-rss').textContent();
  if (!/MiB|GiB/.test(rss)) throw new Error(`the console shows memory ${rss}`);

  step('the sections that only read show their data');
  const storage = await openSection(root, 'Storage');
  await storage.getByTestId('admin-database-size').waitFor();
  const voice = await openSection(root, 'Voice now');
  await voice.getByText('No one is in a voice room.').waitFor();
  const tls = await openSection(root, 'TLS');
  await tls.getByText('plain HTTP').waitFor();
  const warnings = await openSection(root, 'Warnings');
  await warnings.locator('[data-testid="admin-log"], p.muted').first().waitFor();
  const lan = await openSection(root, 'On the LAN');
  await lan.getByTestId('admin-discovered').waitFor();
  const bans = await openSection(root, 'Ban notifications');
  await bans.getByTestId('admin-bans').waitFor();

  step('rootb reads B\'s key fingerprint on B\'s console');
  await signIn(rootb, B, 'rootb');
  await rootb.page.getByTestId('admin-open').click();
  const ownB = words(await rootb.page.getByTestId('admin-own-fingerprint').textContent());
  if (ownB.length !== 64) throw new Error(`B's console shows fingerprint ${ownB}`);

  step('root adds B: A fetches B\'s fingerprint, root compares it with rootb\'s, and pins it');
  const peers = await openSection(root, 'Peers');
  await peers.getByTestId('admin-peers').getByText('No peers yet.').waitFor();
  await peers.getByTestId('admin-peer-url').fill(B);
  await peers.getByTestId('admin-peer-fetch').click();
  await peers.getByTestId('admin-peer-compare').waitFor();
  const found = words(await peers.getByTestId('admin-peer-found-fingerprint').textContent());
  if (found !== ownB) throw new Error(`A fetched fingerprint ${found}, B's owner reads ${ownB}`);
  if ((await peers.getByTestId('admin-peer').count()) !== 0) throw new Error('B was pinned before the comparison');
  await peers.getByTestId('admin-peer-confirm').click();
  const listed = peers.getByTestId('admin-peer').and(root.page.locator(`[data-origin="${B}"]`));
  await listed.waitFor();
  await listed.and(root.page.locator('[data-reachable="true"]')).waitFor();
  const status = await listed.getByTestId('admin-peer-status').textContent();
  if (!/reachable · last contact .+ · 0 waiting calls/.test(status)) throw new Error(`B's status reads ${status}`);
  if (words(await listed.locator('.fingerprint').textContent()) !== ownB) throw new Error('the pinned fingerprint is not B\'s');

  step('root removes B again');
  root.page.once('dialog', (d) => d.accept());
  await listed.getByTestId('admin-peer-remove').click();
  await peers.getByTestId('admin-peers').getByText('No peers yet.').waitFor();

  step('bob, no administrator, sees no console entry');
  await signUp(bob, A, 'bob');
  await bob.page.getByTestId('settings-open').waitFor({ state: 'visible' });
  if (await bob.page.getByTestId('admin-open').isVisible()) throw new Error('bob sees the console entry');

  if (problems.length) throw new Error(problems.join('\n'));
  console.log('all steps passed');
  await browser.close();
} catch (e) {
  console.error(`FAILED: ${e.stack || e}`);
  if (problems.length) console.error(problems.join('\n'));
  await browser.close();
  process.exit(1);
}
