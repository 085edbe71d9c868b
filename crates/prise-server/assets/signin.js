// The sign-in dialog: a nickname and, for servers that require it, an
// access token.

import { ui } from './dom.js';
import { NAME_RE } from './format.js';

let state = null;
let signIn = null;

/**
 * Binds the dialog to the page: `page.state` (name, token) and
 * `page.signIn(name, token)`, called with what the user submitted.
 */
export function initSignIn(page) {
  ({ state, signIn } = page);
  ui.loginForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const name = ui.nickname.value.trim();
    if (!NAME_RE.test(name)) {
      ui.loginError.hidden = false;
      ui.loginError.textContent = 'Use 1 to 32 letters, digits, “-”, “_” or “.”.';
      ui.nickname.focus();
      return;
    }
    ui.login.close();
    signIn(name, ui.token.value.trim());
    ui.input.focus();
  });
  ui.login.addEventListener('cancel', (ev) => {
    if (!state.name) ev.preventDefault();
  });
  ui.me.addEventListener('click', () => openLogin(null));
}

/** Opens the dialog, filled with the current name and token; `error` is shown above the button. */
export function openLogin(error) {
  ui.nickname.value = state.name || '';
  ui.token.value = state.token || '';
  ui.loginError.hidden = !error;
  ui.loginError.textContent = error || '';
  if (!ui.login.open) ui.login.showModal();
  ui.nickname.focus();
  ui.nickname.select();
}
