// Where the client keeps its tokens: one per backend origin, so a token issued by one
// environment (production, a preview, localhost) is never sent to another.

/** A key-value store. Any of the three methods may be async (secure storage usually is). */
export interface TokenStorage {
  get(key: string): string | null | undefined | Promise<string | null | undefined>;
  set(key: string, value: string): void | Promise<void>;
  remove(key: string): void | Promise<void>;
}

/** Tokens for this process's lifetime only (tests, server-side use, a locked-down kiosk). */
export function memoryStorage(): TokenStorage {
  const values = new Map<string, string>();
  return {
    get: (key) => values.get(key) ?? null,
    set: (key, value) => void values.set(key, value),
    remove: (key) => void values.delete(key),
  };
}

/** The subset of the Web Storage API the client uses (`window.localStorage` has it). */
export interface WebStorageLike {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
}

/**
 * A browser's `localStorage` (or `sessionStorage`). Anything running in the page can read it:
 * prefer an httpOnly cookie flow or the platform's secure storage where there is one.
 */
export function webStorage(storage?: WebStorageLike): TokenStorage {
  const store = storage ?? (globalThis as { localStorage?: WebStorageLike }).localStorage;
  if (!store) throw new Error("webStorage(): no localStorage here; pass a storage object");
  return {
    get: (key) => store.getItem(key),
    set: (key, value) => store.setItem(key, value),
    remove: (key) => store.removeItem(key),
  };
}

/**
 * Storage through the app's own callbacks: Electron's `safeStorage` (encrypt, then write to a
 * file or electron-store), React Native's `expo-secure-store` or `react-native-keychain`.
 * Keys are made of `A-Z a-z 0-9 . - _` only, which every one of them accepts.
 */
export function callbackStorage(callbacks: TokenStorage): TokenStorage {
  return {
    get: (key) => callbacks.get(key),
    set: (key, value) => callbacks.set(key, value),
    remove: (key) => callbacks.remove(key),
  };
}

/** base64url of the UTF-8 bytes: distinct origins give distinct keys, safe for any store. */
function encodeKeyPart(value: string): string {
  const bytes = new TextEncoder().encode(value);
  let binary = "";
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/** The storage key of the token for one backend origin (`https://api.example.com`). */
export function tokenKey(origin: string): string {
  return `tollgate.token.${encodeKeyPart(origin)}`;
}

/** The storage key of the environment chosen at run time (when the client remembers it). */
export const ENVIRONMENT_KEY = "tollgate.environment";
