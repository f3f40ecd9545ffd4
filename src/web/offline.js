// Registers the service worker (/sw.js) that keeps the app shell for opening offline or
// while the box is down. Browsers allow service workers in secure contexts only (HTTPS
// with an accepted certificate, or localhost); elsewhere the client runs without one.

export async function registerServiceWorker() {
  if (!('serviceWorker' in navigator) || !window.isSecureContext) return null;
  try {
    // `none`: the browser always asks the box for /sw.js, so a new binary is seen at once.
    return await navigator.serviceWorker.register('/sw.js', { scope: '/', updateViaCache: 'none' });
  } catch (e) {
    // The client works without it; only opening while the box is down does not.
    console.warn(`The offline shell is not available: ${e.message}`);
    return null;
  }
}
