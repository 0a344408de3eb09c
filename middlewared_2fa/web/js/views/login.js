// Sign-in: username and password, then the one-time code when the server answers
// OTP_REQUIRED (API.md §3). The server allows 3 retries of the code: the 4th wrong code
// answers AUTH_ERR and the password step starts over. "Use a recovery code" switches the
// code field to one of the user's recovery codes (API.md §10), sent the same way in
// otp_token; wrong codes of either kind share the retries.
//
// For a user with passkeys (API.md §12) OTP_REQUIRED carries `webauthn.options`: the step
// then leads with "Use a passkey" (navigator.credentials.get, sent as the WEBAUTHN
// mechanism); the code form stays below it, marked as the way for users who also have a
// TOTP secret or recovery codes (the server does not say whether this one does). Where
// this page cannot use passkeys (an IP address, an insecure context) it says why and
// where to open it instead, and the code is all that is offered. Every answer spends the
// challenge, and each OTP_REQUIRED brings a new one: the newest options are kept. A passkey the server refuses counts like a wrong code (the
// same 4 attempts); one the browser does not give (cancelled, unknown) is not sent.

import { h, replace } from '../dom.js';
import { describeError } from '../errors.js';
import { formField } from '../form.js';
import { ConnectionLost, RpcError } from '../rpc.js';
import { getPasskey, pageProblem, passkeyMessage, problemContent } from '../webauthn.js';

const OTP_ATTEMPTS = 4; // the first code plus 3 retries

function field(options) {
  return formField(options).el;
}

function attemptsLeft(left) {
  return `${left} ${left === 1 ? 'attempt' : 'attempts'} left.`;
}

/** The login screen. notice: a message to show above the form (e.g. after logout). */
export function loginView(app, { notice } = {}) {
  const card = h('section', { class: 'card login-card', 'aria-labelledby': 'login-title' });
  const el = h(
    'div',
    { class: 'login-page' },
    h(
      'div',
      { class: 'login-brand' },
      h('img', { src: 'img/logo.svg', alt: '', width: 48, height: 48 }),
      h('span', { class: 'login-product', text: 'middlewared-2fa' }),
    ),
    card,
  );
  let username = '';
  let busy = false;
  // The newest PublicKeyCredentialRequestOptions (JSON) of the pending step, if the user
  // has passkeys: every OTP_REQUIRED answer brings new ones.
  let passkeyOptions = null;

  /** text: a string, or content for h() (a passkey message with a link). */
  function message(kind, text) {
    if (!text) return null;
    return h('p', { class: `login-message login-${kind}`, role: kind === 'error' ? 'alert' : 'status' }, text);
  }

  function setBusy(form, value, label) {
    busy = value;
    for (const control of form.querySelectorAll('input, button')) control.disabled = value;
    const submit = form.querySelector('button[type="submit"]');
    if (value) {
      submit.dataset.label = submit.textContent;
      submit.textContent = label;
    } else if (submit.dataset.label) {
      submit.textContent = submit.dataset.label;
    }
  }

  function passwordStep({ error, info } = {}) {
    busy = false;
    const user = h('input', {
      type: 'text',
      name: 'username',
      autocomplete: 'username',
      autocapitalize: 'none',
      spellcheck: 'false',
      required: true,
      value: username,
    });
    const password = h('input', { type: 'password', name: 'password', autocomplete: 'current-password', required: true });
    const errorBox = message('error', error);
    const form = h(
      'form',
      { class: 'form', novalidate: true },
      message('info', info),
      errorBox,
      field({ label: 'Username', input: user }),
      field({ label: 'Password', input: password }),
      h('div', { class: 'form-actions' }, h('button', { type: 'submit', class: 'button button-primary button-block', text: 'Log In' })),
    );
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      if (busy) return;
      username = user.value.trim();
      const secret = password.value;
      if (!username || !secret) {
        passwordStep({ error: 'Enter your username and password.' });
        return;
      }
      setBusy(form, true, 'Logging in…');
      let reply;
      try {
        reply = await app.rpc.call('auth.login_ex', [
          { mechanism: 'PASSWORD_PLAIN', username, password: secret },
        ]);
      } catch (err) {
        password.value = '';
        passwordStep({ error: loginError(err) });
        return;
      }
      password.value = '';
      if (reply.response_type === 'SUCCESS') {
        await app.enter(reply.user_info, { fresh: true });
      } else if (reply.response_type === 'OTP_REQUIRED') {
        passkeyOptions = reply.webauthn ? reply.webauthn.options : null;
        otpStep({ failures: 0 });
      } else {
        passwordStep({ error: 'Wrong username or password.' });
      }
    });
    replace(
      card,
      h('h1', { class: 'card-title', id: 'login-title', text: 'Log In' }),
      h('p', { class: 'card-subtitle', text: 'Sign in to manage two-factor authentication.' }),
      form,
    );
    (username ? password : user).focus();
  }

  function otpStep({ failures, error, recovery = false, switched = false }) {
    busy = false;
    // The passkey is offered in the code step, not in the recovery-code one.
    const passkey = passkeyOptions && !recovery ? passkeyOptions : null;
    const passkeyProblem = passkey ? pageProblem(passkey.rpId) : null;
    const code = recovery
      ? h('input', {
          type: 'text',
          name: 'recovery-code',
          autocomplete: 'off',
          inputmode: 'text',
          autocapitalize: 'none',
          spellcheck: 'false',
          maxlength: 64,
          placeholder: 'abcd-efgh-ijkl-mnop',
          required: true,
          class: 'input-code input-recovery',
        })
      : h('input', {
          type: 'text',
          name: 'otp',
          autocomplete: 'one-time-code',
          inputmode: 'numeric',
          autocapitalize: 'none',
          spellcheck: 'false',
          maxlength: 16,
          required: true,
          class: 'input-code',
        });
    const attempts = attemptsLeft(OTP_ATTEMPTS - failures);
    // After a switch of the kind of code, the last failure's message would name the wrong kind.
    const errorText =
      error ||
      (failures > 0 && !switched
        ? recovery
          ? `Wrong or already used recovery code. ${attempts} Each recovery code works only once.`
          : `Wrong or expired code. ${attempts} ` +
            'Enter the code your authenticator app shows now; if codes keep failing, check that ' +
            "the device's clock is set automatically."
        : null);
    const switcher = h('button', {
      type: 'button',
      class: 'link-button',
      text: recovery
        ? passkeyOptions
          ? 'Use a passkey or a code from your authenticator app'
          : 'Use a code from your authenticator app'
        : 'Use a recovery code',
    });
    const passkeyButton =
      passkey && !passkeyProblem
        ? h('button', { type: 'button', class: 'button button-primary button-block passkey-button', text: 'Use a passkey' })
        : null;
    // The passkey first; the code below it only for those who also have an app or
    // recovery codes (the server does not say whether this user does).
    const passkeyBlock = passkey
      ? h(
          'div',
          { class: 'passkey-login' },
          passkeyButton ||
            h('p', { class: 'note note-warn passkey-host-note', role: 'note' }, problemContent(passkeyProblem)),
          h('p', {
            class: 'login-alt',
            text: 'Or, if you also use an authenticator app or have recovery codes:',
          }),
        )
      : null;
    switcher.addEventListener('click', () => {
      if (busy) return;
      otpStep({ failures, recovery: !recovery, switched: true });
    });
    const cancel = h('button', { type: 'button', class: 'button button-secondary', text: 'Cancel' });
    const form = h(
      'form',
      { class: 'form', novalidate: true },
      message('error', errorText),
      passkeyBlock,
      recovery
        ? field({
            label: 'Recovery code',
            input: code,
            help:
              'Enter one of the recovery codes you saved when you set up two-factor ' +
              'authentication. Upper or lower case, spaces and hyphens do not matter.',
          })
        : field({
            label: 'One-time code',
            input: code,
            help: 'Enter the code your authenticator app shows for this account.',
          }),
      h('p', { class: 'switch-row' }, switcher),
      h(
        'div',
        { class: 'form-actions form-actions-split' },
        cancel,
        // With a passkey offered, the passkey is the primary action (Enter still sends a code).
        h('button', { type: 'submit', class: `button ${passkeyButton ? 'button-secondary' : 'button-primary'}`, text: 'Proceed' }),
      ),
    );
    cancel.addEventListener('click', () => {
      // Closing the socket drops the pending OTP step on the server.
      app.rpc.close();
      passwordStep({ info: 'Login cancelled.' });
    });
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      if (busy) return;
      const value = code.value;
      if (!value.trim()) {
        otpStep({ failures, recovery, error: recovery ? 'Enter a recovery code.' : 'Enter the one-time code.' });
        return;
      }
      setBusy(form, true, 'Checking…');
      await send({ mechanism: 'OTP_TOKEN', otp_token: value }, { failures, recovery, passkey: false });
    });
    if (passkeyButton) {
      passkeyButton.addEventListener('click', async () => {
        if (busy) return;
        busy = true;
        for (const control of form.querySelectorAll('input, button')) control.disabled = true;
        passkeyButton.textContent = 'Waiting for your passkey…';
        let credential;
        try {
          credential = await getPasskey(passkey);
        } catch (err) {
          // The browser gave no assertion (cancelled, timed out, not registered here):
          // nothing was sent, no attempt is used.
          otpStep({ failures, recovery, error: passkeyMessage(err) });
          return;
        }
        passkeyButton.textContent = 'Checking…';
        await send({ mechanism: 'WEBAUTHN', credential }, { failures, recovery, passkey: true });
      });
    }
    replace(
      card,
      h('h1', {
        class: 'card-title',
        id: 'login-title',
        text: recovery ? 'Recovery Code' : passkeyButton ? 'Passkey' : passkey ? 'Passkey or Code' : 'One-Time Code',
      }),
      h('p', {
        class: 'card-subtitle',
        text: recovery
          ? `The account ${username} is protected by two-factor authentication. Lost your ` +
            'authenticator? A recovery code takes the place of its code, once.'
          : passkeyButton
            ? `The account ${username} is protected by two-factor authentication. Use your passkey.`
            : `The account ${username} is protected by two-factor authentication.`,
      }),
      form,
    );
    (passkeyButton || code).focus();
  }

  /** Send the step after OTP_REQUIRED (a code or a passkey's assertion); show the answer. */
  async function send(loginData, { failures, recovery, passkey }) {
    let reply;
    try {
      reply = await app.rpc.call('auth.login_ex_continue', [loginData]);
    } catch (err) {
      if (err instanceof RpcError && err.errname === 'EINVAL') {
        passwordStep({ error: 'The login step expired. Enter your password again.' });
      } else if (err instanceof RpcError && err.errname === 'EBUSY') {
        app.rpc.close();
        passwordStep({ error: TOO_MANY });
      } else if (err instanceof ConnectionLost) {
        passwordStep({ error: 'The connection to the server was lost. Log in again.' });
      } else {
        otpStep({ failures, recovery, error: loginError(err) });
      }
      return;
    }
    if (reply.response_type === 'SUCCESS') {
      passkeyOptions = null;
      await app.enter(reply.user_info, { fresh: true });
      if (recovery && !passkey) {
        app.toast(
          'You logged in with a recovery code; it cannot be used again. If you lost your ' +
            'authenticator, renew your secret now.',
          'warn',
        );
      }
    } else if (reply.response_type === 'OTP_REQUIRED') {
      // The answer spent the challenge: keep the new one (API.md §12).
      passkeyOptions = reply.webauthn ? reply.webauthn.options : null;
      const left = OTP_ATTEMPTS - failures - 1;
      if (passkey) {
        otpStep({ failures: failures + 1, recovery, error: `The passkey was not accepted. ${attemptsLeft(left)}` });
        return;
      }
      // A right code whose time step was used already (RFC 6238 §5.2) is not a wrong one:
      // this session alone may ask (auth.last_code_refusal).
      let reused = false;
      if (!recovery) {
        try {
          reused = (await app.rpc.call('auth.last_code_refusal')) === 'REUSED';
        } catch (err) {
          reused = false; // an older server: say "wrong or expired" as before
        }
      }
      otpStep({
        failures: failures + 1,
        recovery,
        error: reused ? `This code was already used; wait for the next one. ${attemptsLeft(left)}` : null,
      });
    } else {
      passkeyOptions = null;
      passwordStep({
        error: passkey
          ? 'Too many failed attempts. Log in again with your password.'
          : 'Too many wrong codes. Log in again with your password.',
      });
    }
  }

  return {
    el,
    focusHeading: false,
    mounted() {
      passwordStep({ info: notice });
    },
  };
}

// The account's cool-down after repeated failures and the address's rate limit give the
// same answer (EBUSY "Rate Limit Exceeded", API.md §3), so one text covers both.
const TOO_MANY =
  'Too many login attempts for this account or from this address (cool-down). ' +
  'Wait a few minutes, then try again.';

function loginError(err) {
  if (err instanceof RpcError && err.errname === 'EBUSY') return TOO_MANY;
  return describeError(err);
}
