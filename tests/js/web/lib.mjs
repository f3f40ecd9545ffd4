// What the browser scripts share: Debian's Chromium launched headless, one person per
// browser context whose script errors, console errors and Content Security Policy
// violations become problems that fail the script, and step lines.
import { chromium } from 'playwright-core';

/** How long a script waits for anything a person would see. */
export const TIMEOUT = 15000;

/** Debian's Chromium, headless, without background traffic; `args` are added. */
export function launch(args = []) {
  return chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync', ...args],
  });
}

/** Prints a step of the script. */
export function step(text) {
  console.log(`step: ${text}`);
}

/**
 * People in `browser`, each in a context of their own (`contextOptions`); what goes wrong
 * on their pages lands in `problems`, except console errors while `quiet()` holds (a box
 * the script stopped on purpose).
 */
export function people(browser, { contextOptions = {}, quiet = () => false } = {}) {
  const problems = [];
  async function person(name) {
    const context = await browser.newContext(contextOptions);
    const page = await context.newPage();
    page.setDefaultTimeout(TIMEOUT);
    await page.addInitScript(() => {
      document.addEventListener('securitypolicyviolation', (e) => {
        console.error(`CSP violation: ${e.violatedDirective} ${e.blockedURI}`);
      });
    });
    page.on('console', (m) => {
      if (m.type() === 'error' && !quiet() && !/status of 4\d\d/.test(m.text())) problems.push(`${name}: console error: ${m.text()}`);
    });
    page.on('pageerror', (e) => problems.push(`${name}: page error: ${e.stack || e.message}`));
    return { name, context, page };
  }
  return { problems, person };
}
