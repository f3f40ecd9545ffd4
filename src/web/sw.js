// The service worker: keeps the app shell (the page, its scripts, styles, manifest and
// icons) so the client opens at once and, with the box down, shows its own page instead
// of a browser error. It is served at /sw.js by src/http/web.rs, which writes in the
// version (the binary's version and a hash of every embedded file) and the shell's paths:
// a new binary is a new worker with a new cache.
//
// Only the shell's own paths are intercepted. The API, OAuth, federation and
// /.well-known/ requests, websockets and every other origin go straight to the network,
// so no API answer or token is ever stored here.

const VERSION = 'HEARTH_VERSION';
const SHELL = ['HEARTH_SHELL'];
const CACHE = `hearth-shell-${VERSION}`;
const PAGE = '/';
// After this long without an answer, a navigation gets the cached page.
const NAVIGATION_TIMEOUT_MS = 3000;

self.addEventListener('install', (event) => {
  event.waitUntil((async () => {
    const cache = await caches.open(CACHE);
    // `reload` skips the HTTP cache, so the new cache holds this binary's files.
    await cache.addAll(SHELL.map((path) => new Request(path, { cache: 'reload' })));
    await self.skipWaiting();
  })());
});

self.addEventListener('activate', (event) => {
  event.waitUntil((async () => {
    const names = await caches.keys();
    await Promise.all(names.filter((name) => name !== CACHE).map((name) => caches.delete(name)));
    await self.clients.claim();
  })());
});

function isPage(url) {
  return url.pathname === PAGE || url.pathname.startsWith('/invite/');
}

function isShellFile(url) {
  return url.pathname.startsWith('/web/') || SHELL.includes(url.pathname);
}

self.addEventListener('fetch', (event) => {
  const request = event.request;
  if (request.method !== 'GET') return;
  const url = new URL(request.url);
  if (url.origin !== self.location.origin) return;
  if (request.mode === 'navigate' && isPage(url)) {
    event.respondWith(navigation(request));
  } else if (request.mode !== 'navigate' && isShellFile(url)) {
    event.respondWith(shellFile(event));
  }
  // Anything else is not intercepted.
});

// The network's page when it answers in time (kept as the cached page), else the cached one.
async function navigation(request) {
  const cache = await caches.open(CACHE);
  const fromNetwork = fetch(request).then(async (response) => {
    if (response.ok) await cache.put(PAGE, response.clone());
    return response;
  });
  // Answered below when the network loses the race; the late failure is expected then.
  fromNetwork.catch(() => {});
  let timer;
  const late = new Promise((resolve) => { timer = setTimeout(resolve, NAVIGATION_TIMEOUT_MS); });
  try {
    const response = await Promise.race([fromNetwork, late]);
    if (response) return response;
  } catch (e) {
    // Unreachable: the cached page says so itself.
  } finally {
    clearTimeout(timer);
  }
  const cached = await cache.match(PAGE);
  return cached || fromNetwork;
}

// The cached file at once; the network's copy replaces it in the background.
async function shellFile(event) {
  const cache = await caches.open(CACHE);
  const cached = await cache.match(event.request);
  const refresh = fetch(event.request).then(async (response) => {
    if (response.ok) await cache.put(event.request, response.clone());
    return response;
  });
  if (cached) {
    event.waitUntil(refresh.catch(() => {}));
    return cached;
  }
  return refresh;
}

// A push (RFC 8291, decrypted by the browser): shown as a notification; a click brings
// the client forward, or opens it.
self.addEventListener('push', (event) => {
  let notice = {};
  try {
    notice = event.data ? event.data.json() : {};
  } catch (e) {
    notice = {};
  }
  event.waitUntil(self.registration.showNotification(notice.title || 'Hearth', {
    body: notice.body || '',
    tag: notice.channel_id ? `hearth-${notice.channel_id}` : undefined,
    data: { host: notice.host || null, channel_id: notice.channel_id || null },
  }));
});

self.addEventListener('notificationclick', (event) => {
  event.notification.close();
  event.waitUntil((async () => {
    const open = await self.clients.matchAll({ type: 'window', includeUncontrolled: true });
    if (open.length) return open[0].focus();
    return self.clients.openWindow('/');
  })());
});
