// The prompt after login when global 2FA is on and the user has no second factor: no
// secret and no passkey (auth.me two_factor_config.setup_required, API.md §12). Set Up Now
// configures an authenticator app; Add a Passkey (where this page can use passkeys) opens
// the Two-Factor Authentication screen's Add Passkey dialog. Skipping asks for
// confirmation; the prompt comes back at the next login.

import { h } from '../dom.js';
import { openDialog } from '../dialog.js';
import { passkeysBlocked } from './passkeys.js';

/**
 * Resolves 'setup' (an authenticator app), 'passkey' (Add a Passkey: offered only where
 * this page can use passkeys), 'skip', or null when the dialog was closed otherwise
 * (logout).
 */
export function showSetupPrompt(app) {
  const passkeys = !passkeysBlocked();
  const prompt = {
    title: 'Set Up Two-Factor Authentication',
    body: () => [
      h('p', {
        text: passkeys
          ? 'Two-factor authentication is enabled on this system, and your account has no ' +
            'second factor yet. Set one up now: an authenticator app on your phone or ' +
            'computer (it takes about a minute), or a passkey (a security key, or your ' +
            "device's fingerprint or face unlock)."
          : 'Two-factor authentication is enabled on this system, and your account has no ' +
            'second factor yet. Set it up now: you need an authenticator app on your phone ' +
            'or computer, and it takes about a minute. Passkeys (a security key, or your ' +
            "device's fingerprint or face unlock) cannot be added from this page: the " +
            'Two-Factor Authentication screen says why.',
      }),
      h('p', {
        class: 'muted',
        text: 'Until you do, logging in to your account needs only your password.',
      }),
    ],
    actions: [
      { label: 'Skip', kind: 'secondary', run: (ctx) => ctx.render(confirmSkip) },
      passkeys ? { label: 'Add a Passkey', kind: 'secondary', value: 'passkey' } : null,
      { label: 'Set Up Now', kind: 'primary', value: 'setup' },
    ].filter(Boolean),
    // Escape means "not now": it asks for the same confirmation as Skip.
    onCancel: (ctx) => {
      ctx.render(confirmSkip);
      return false;
    },
  };
  const confirmSkip = {
    title: 'Skip Two-Factor Setup?',
    body: () => [
      h('p', {
        text:
          'Your account stays protected by your password only. You will be asked to set up ' +
          'two-factor authentication again at your next login.',
      }),
    ],
    actions: [
      { label: 'Go Back', kind: 'secondary', run: (ctx) => ctx.render(prompt) },
      { label: 'Skip Setup', kind: 'primary', value: 'skip' },
    ],
    initialFocus: (dialog) => dialog.querySelector('.button-secondary'),
    onCancel: (ctx) => {
      ctx.render(prompt);
      return false;
    },
  };
  return openDialog(prompt);
}
