// What this browser keeps between visits: one IndexedDB object store, key "state", holding
// the device key, the identity key, the refresh token, the user id and the username.

function openDb() {
  return new Promise((resolve, reject) => {
    const req = indexedDB.open('hearth', 1);
    req.onupgradeneeded = () => req.result.createObjectStore('kv');
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

async function withStore(mode, f) {
  const db = await openDb();
  try {
    return await new Promise((resolve, reject) => {
      const tx = db.transaction('kv', mode);
      const result = f(tx.objectStore('kv'));
      tx.oncomplete = () => resolve(result.result);
      tx.onerror = () => reject(tx.error);
      tx.onabort = () => reject(tx.error);
    });
  } finally {
    db.close();
  }
}

/** The saved state of this browser (keys, session), or null. */
export function loadState() {
  return withStore('readonly', (s) => s.get('state')).then((v) => v || null);
}

/** Saves the state (CryptoKey objects are stored as they are, unextractable ones too). */
export function saveState(state) {
  return withStore('readwrite', (s) => s.put(state, 'state'));
}

export function clearState() {
  return withStore('readwrite', (s) => s.delete('state'));
}
