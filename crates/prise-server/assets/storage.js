// What the page remembers: settings as JSON in localStorage, the access
// token in sessionStorage. Storage may be missing or refuse writes (private
// mode, quota); the page then works without remembering.

/** The sessionStorage key of the access token. */
export const TOKEN_KEY = 'prise.token';

/**
 * JSON values in the Storage that `storage()` returns (e.g. localStorage),
 * with a fallback for what is missing or unreadable. A function, because
 * merely naming localStorage throws where storage is disabled.
 */
export function jsonStore(storage) {
  return {
    get(key, fallback) {
      try {
        const v = storage().getItem(key);
        return v === null ? fallback : JSON.parse(v);
      } catch (_) {
        return fallback;
      }
    },
    set(key, value) {
      try {
        storage().setItem(key, JSON.stringify(value));
      } catch (_) {
        /* private mode or quota: the page still works without persistence */
      }
    },
  };
}

/**
 * The access token in the Storage that `storage()` returns: meant for
 * sessionStorage, so it lives for the tab only and never on disk. An empty
 * token removes it.
 */
export function tokenStore(storage) {
  return {
    get() {
      try {
        return storage().getItem(TOKEN_KEY) || '';
      } catch (_) {
        return '';
      }
    },
    set(token) {
      try {
        if (token) storage().setItem(TOKEN_KEY, token);
        else storage().removeItem(TOKEN_KEY);
      } catch (_) {
        /* storage unavailable: the token lasts until the page is closed */
      }
    },
  };
}
