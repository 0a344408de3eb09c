// Staged enrolment of a TOTP secret (API.md §4), so that a failed scan never locks anyone
// out: user.twofactor_enroll makes a *pending* secret (valid 15 minutes), the card shows
// its QR code (user.twofactor_qr {pending: true}) and key, and user.twofactor_confirm
// makes it the active secret when the code typed is right. Until then the active secret,
// if any, keeps working.
//
// The pending secret lives in memory only (app.enrolment), never in sessionStorage: after
// a reload the setup starts again, and the abandoned pending secret expires on the server.

import { h, replace, uid } from '../dom.js';
import { describeError } from '../errors.js';
import { formField } from '../form.js';
import { shortTime, wireMillis } from '../format.js';
import { RpcError } from '../rpc.js';
import { secretBlock } from './parts.js';

/** Minutes a pending secret waits for its confirmation (API.md §4). */
const PENDING_MINUTES = 15;

/**
 * Ask the server for a pending secret (`options`: {interval?, otp_digits?}) and keep it
 * in app.enrolment = {username, uri, interval, digits, expiresAt (ms), options}.
 * Rejects with the call's error.
 */
export async function startEnrolment(app, options = {}) {
  const result = await app.rpc.call('user.twofactor_enroll', [app.username, options]);
  app.enrolment = {
    username: app.username,
    uri: result.provisioning_uri,
    interval: result.interval,
    digits: result.otp_digits,
    expiresAt: wireMillis(result.expires_at),
    options,
  };
  return app.enrolment;
}

/** The pending enrolment of the logged-in user, or null. */
export function currentEnrolment(app) {
  const enrolment = app.enrolment;
  return enrolment && app.me && enrolment.username === app.username ? enrolment : null;
}

/**
 * The "Finish Setting Up Your Authenticator" card of app.enrolment: QR code, key, expiry,
 * and the code field. `onConfirmed(config)` runs after a right code (config: the
 * user.twofactor_confirm result); `onCancel`, when given, adds Cancel Setup.
 * Returns {el, focus()}.
 */
export function enrolmentCard(app, { onConfirmed, onCancel }) {
  const titleId = uid('confirm-title');
  const heading = h('h2', {
    class: 'card-title',
    id: titleId,
    tabindex: '-1',
    text: 'Finish Setting Up Your Authenticator',
  });
  const body = h('div', { class: 'enrolment-body' });
  const el = h('section', { class: 'card card-highlight', 'aria-labelledby': titleId }, heading, body);

  function expiryText(enrolment) {
    const by = shortTime(enrolment.expiresAt);
    const hadSecret = app.me.two_factor_config.secret_configured;
    return hadSecret
      ? `Your current secret keeps working until you confirm this new one. Confirm it by ` +
          `${by} (within ${PENDING_MINUTES} minutes); after that it expires and you start again.`
      : `Nothing changes for your account until you confirm this secret. Confirm it by ` +
          `${by} (within ${PENDING_MINUTES} minutes); after that it expires and you start again.`;
  }

  function build() {
    const enrolment = currentEnrolment(app);
    if (!enrolment) {
      replace(body, h('p', { class: 'form-error', text: 'There is no new secret to confirm.' }));
      return;
    }
    const code = h('input', {
      type: 'text',
      name: 'code',
      autocomplete: 'one-time-code',
      inputmode: 'numeric',
      autocapitalize: 'none',
      spellcheck: 'false',
      maxlength: 16,
      class: 'input-code',
    });
    const codeField = formField({
      label: 'Code from your authenticator app',
      input: code,
      help: 'Enter the code the app shows now for the new entry, to check that it has the new secret.',
    });
    const confirmButton = h('button', { type: 'submit', class: 'button button-primary', text: 'Confirm' });
    const cancelButton = onCancel
      ? h('button', { type: 'button', class: 'button button-secondary', text: 'Cancel Setup' })
      : null;
    const restartButton = h('button', {
      type: 'button',
      class: 'button button-secondary',
      text: 'Start Again',
      hidden: true,
    });
    const form = h(
      'form',
      { class: 'form confirm-form', novalidate: true },
      codeField.el,
      h('div', { class: 'form-actions' }, restartButton, cancelButton, confirmButton),
    );
    const expiry = h('p', { class: 'note note-info expiry-note', text: expiryText(enrolment) });
    replace(
      body,
      expiry,
      h(
        'ol',
        { class: 'steps' },
        h('li', { text: 'Scan the QR code with your authenticator app, or enter the key by hand.' }),
        h('li', { text: 'Enter the code the app shows to confirm that it works.' }),
      ),
      secretBlock(app, { uri: enrolment.uri }),
      form,
    );

    function expired() {
      codeField.setError(
        'This new secret expired before it was confirmed, so it was not saved. Start again ' +
          'to get a new QR code, and delete the entry you added to your app.',
      );
      restartButton.hidden = false;
      confirmButton.disabled = true;
      restartButton.focus();
    }

    // Expiry is the server's to judge (EINVAL below): the browser's clock may be off.

    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      if (confirmButton.disabled) return;
      const value = code.value;
      if (!value.trim()) {
        codeField.setError('Enter the code your authenticator app shows.');
        code.focus();
        return;
      }
      codeField.setError(null);
      confirmButton.disabled = true;
      if (cancelButton) cancelButton.disabled = true;
      let config;
      try {
        config = await app.rpc.call('user.twofactor_confirm', [app.username, value]);
      } catch (err) {
        confirmButton.disabled = false;
        if (cancelButton) cancelButton.disabled = false;
        if (err instanceof RpcError && err.code === -32602) {
          // Wrong code for the pending secret (user_twofactor_confirm.token).
          codeField.setError(
            'That code is not right. Enter the code your app shows now for the new entry ' +
              '(each code works only once). If codes keep failing, check that the device’s ' +
              'clock is set automatically: codes depend on the time.',
          );
          code.value = '';
          code.focus();
        } else if (err instanceof RpcError && err.errname === 'EINVAL') {
          expired(); // no pending secret: it expired (or was replaced elsewhere)
        } else if (err instanceof RpcError && err.errname === 'EBUSY') {
          codeField.setError(
            'Too many wrong codes for your account: it cools down for a few minutes. Wait, ' +
              'then enter the code your app shows.',
          );
          code.focus();
        } else {
          codeField.setError(describeError(err));
          code.focus();
        }
        return;
      }
      app.enrolment = null;
      await onConfirmed(config);
    });
    if (cancelButton) {
      cancelButton.addEventListener('click', () => {
        app.enrolment = null;
        onCancel();
      });
    }
    restartButton.addEventListener('click', async () => {
      restartButton.disabled = true;
      try {
        await startEnrolment(app, enrolment.options);
      } catch (err) {
        restartButton.disabled = false;
        codeField.setError(describeError(err));
        return;
      }
      build();
      heading.focus();
    });
  }

  build();
  return {
    el,
    focus() {
      heading.focus();
    },
  };
}
