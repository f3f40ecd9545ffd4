// The installable client in Debian's Chromium (playwright-core), against a real server:
// node tests/js/web/offline.mjs ORIGIN, run by tests/it/web_offline.rs.
// The service worker takes control and keeps the app shell, never an API answer; with the
// server stopped a reload still shows Hearth's own page; with it back the person is
// signed in again. The server is stopped and started by the Rust test: this script
// prints `control: stop` or `control: start` and waits for `ok` on stdin.
// Exits non-zero with the reason on the first thing a user would see go wrong.
import { chromium } from 'playwright-core';
import { createInterface } from 'node:readline';

const origin = process.argv[2];
if (!origin) throw new Error('usage: offline.mjs ORIGIN');
const TIMEOUT = 15000;
// How soon the page must show with the server down.
const OFFLINE_SHOWN_MS = 2000;
const PASSWORD = 'correct horse battery';
const NEVER_CACHED = ['/api/', '/oauth/', '/.well-known/', '/federation/'];

const stdin = createInterface({ input: process.stdin });
const answers = stdin[Symbol.asyncIterator]();
async function control(what) {
  console.log(`control: ${what}`);
  const { value, done } = await answers.next();
  if (done || value.trim() !== 'ok') throw new Error(`the test did not ${what} the server: ${value}`);
}

function step(text) {
  console.log(`step: ${text}`);
}

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});

const problems = [];
let exitCode = 0;
try {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT);
  await page.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (e) => {
      console.error(`CSP violation: ${e.violatedDirective} ${e.blockedURI}`);
    });
  });
  page.on('console', (m) => {
    if (m.type() === 'error' && m.text().startsWith('CSP violation')) problems.push(m.text());
  });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));

  // Every cached request's path, by cache name.
  const cached = () => page.evaluate(async () => {
    const out = {};
    for (const name of await caches.keys()) {
      const cache = await caches.open(name);
      out[name] = (await cache.keys()).map((r) => {
        const url = new URL(r.url);
        return url.origin === location.origin ? url.pathname : url.href;
      });
    }
    return out;
  });

  // The shell is cached: the page, the manifest, its icons and every /web/ file the page
  // loaded; nothing of the API, OAuth, federation or /.well-known/.
  async function checkCache(when) {
    const caches = await cached();
    const names = Object.keys(caches);
    if (names.length !== 1 || !names[0].startsWith('hearth-shell-')) {
      throw new Error(`${when}: expected one shell cache, found ${JSON.stringify(names)}`);
    }
    const paths = caches[names[0]];
    const loaded = await page.evaluate(() => performance.getEntriesByType('resource')
      .map((e) => new URL(e.name))
      .filter((u) => u.origin === location.origin && u.pathname.startsWith('/web/'))
      .map((u) => u.pathname));
    const manifest = await (await page.request.get(`${origin}/manifest.webmanifest`)).json();
    const wanted = ['/', '/manifest.webmanifest', ...loaded, ...manifest.icons.map((i) => i.src)];
    const missing = wanted.filter((p) => !paths.includes(p));
    if (missing.length) throw new Error(`${when}: not cached: ${missing.join(', ')}`);
    const leaked = paths.filter((p) => !p.startsWith('/') || NEVER_CACHED.some((prefix) => p.startsWith(prefix)));
    if (leaked.length) throw new Error(`${when}: cached what must never be: ${leaked.join(', ')}`);
    return paths;
  }

  step('the client opens and its service worker takes control');
  await page.goto(origin);
  await page.waitForFunction(() => document.body.dataset.ready === 'true');
  await page.waitForFunction(() => navigator.serviceWorker.controller !== null, null, { timeout: TIMEOUT })
    .catch(() => { throw new Error('no service worker controls the page'); });
  const script = await page.evaluate(() => navigator.serviceWorker.controller.scriptURL);
  if (script !== `${origin}/sw.js`) throw new Error(`the page is controlled by ${script}`);
  const shell = await checkCache('after opening');
  step(`the shell is cached (${shell.length} entries)`);

  step('alice signs up');
  await page.getByTestId('tab-signup').click();
  await page.getByTestId('username').fill('alice');
  await page.getByTestId('display-name').fill('Alice');
  await page.getByTestId('password').fill(PASSWORD);
  await page.getByTestId('auth-submit').click();
  await page.getByTestId('me-name').filter({ hasText: 'Alice' }).waitFor();
  const apiCalls = await page.evaluate(() => performance.getEntriesByType('resource')
    .filter((e) => /\/(api|oauth)\//.test(new URL(e.name).pathname)).length);
  if (apiCalls === 0) throw new Error('signing up made no API call');
  await checkCache(`after signing up (${apiCalls} API calls)`);
  step('still only the shell is cached');

  await control('stop');
  step('the server is down: a reload shows Hearth, not the browser\'s error page');
  const started = Date.now();
  try {
    await page.reload({ waitUntil: 'domcontentloaded', timeout: OFFLINE_SHOWN_MS });
  } catch (e) {
    throw new Error(`the reload failed with the server down: ${e.message.split('\n')[0]}`);
  }
  if (page.url().startsWith('chrome-error:')) throw new Error('the browser shows its error page');
  const left = Math.max(OFFLINE_SHOWN_MS - (Date.now() - started), 1);
  await page.waitForFunction(
    () => [...document.querySelectorAll('#app, #auth')].some((e) => !e.hidden),
    null,
    { timeout: left },
  ).catch(() => {
    throw new Error(`neither #app nor #auth is shown within ${OFFLINE_SHOWN_MS} ms`);
  });
  step(`Hearth's page is shown ${Date.now() - started} ms after the reload`);

  await control('start');
  step('the server is back: a reload signs alice in again from IndexedDB');
  await page.reload();
  await page.getByTestId('me-name').filter({ hasText: 'Alice' }).waitFor();
  await checkCache('after coming back');

  if (problems.length) throw new Error(problems.join('\n'));
  console.log('all steps passed');
} catch (e) {
  console.error(`FAILED: ${e.message}`);
  if (problems.length) console.error(problems.join('\n'));
  exitCode = 1;
} finally {
  await browser.close();
  stdin.close();
}
process.exit(exitCode);
