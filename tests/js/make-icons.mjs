// Remakes the web client's PNG icons from src/web/icon.svg in Debian's Chromium:
// node tests/js/make-icons.mjs (from the repository root). Plain icons are the SVG as
// drawn; maskable ones and the Apple touch icon fill the whole square with the icon's
// background colour and shrink the flame into the central safe circle (80% of the side),
// since launchers cut them to their own shape.
import { chromium } from 'playwright-core';
import { readFile, writeFile } from 'node:fs/promises';

const svg = await readFile('src/web/icon.svg', 'utf8');
const background = svg.match(/<rect[^>]*fill="(#[0-9a-f]{6})"/i)[1];
const icons = [
  { file: 'icon-192.png', size: 192, padded: false },
  { file: 'icon-512.png', size: 512, padded: false },
  { file: 'icon-maskable-192.png', size: 192, padded: true },
  { file: 'icon-maskable-512.png', size: 512, padded: true },
  { file: 'apple-touch-icon.png', size: 180, padded: true },
];

const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--headless', '--no-sandbox'] });
try {
  for (const { file, size, padded } of icons) {
    const page = await browser.newPage({ viewport: { width: size, height: size }, deviceScaleFactor: 1 });
    // The flame reaches 47% of the side from the centre; at 75% it stays inside the
    // safe circle of radius 40%.
    const inner = padded ? Math.round(size * 0.75) : size;
    const image = `data:image/svg+xml;base64,${Buffer.from(svg).toString('base64')}`;
    await page.setContent(`<html><body style="margin:0;width:${size}px;height:${size}px;display:grid;place-items:center;background:${padded ? background : 'transparent'}">
      <img src="${image}" width="${inner}" height="${inner}"></body></html>`);
    await page.locator('img').evaluate((img) => img.decode());
    const png = await page.screenshot({ omitBackground: !padded, clip: { x: 0, y: 0, width: size, height: size } });
    await writeFile(`src/web/${file}`, png);
    await page.close();
    console.log(`src/web/${file}`);
  }
} finally {
  await browser.close();
}
