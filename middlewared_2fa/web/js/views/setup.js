// The setup-only session (auth.me account_attributes contains SETUP_ONLY, API.md §4, §10):
// with `enforce` on, a user without a second factor who logs in with a password, and
// anyone who logs in with a one-time password, may only set up two-factor authentication
// (every other call answers EACCES). This screen walks them through it and nothing else:
// a new password first when PASSWORD_CHANGE_REQUIRED (user.update of their own id with
// {password}), then enrol + confirm. A right code makes the session a full LEVEL_2 one;
// the app then shows the normal screens and offers recovery codes. A passkey may take the
// place of the authenticator app (API.md §12): registering one upgrades the session too.

import { h, replace, uid } from '../dom.js';
import { describeError, fieldPath, sentence } from '../errors.js';
import { formField } from '../form.js';
import { RpcError } from '../rpc.js';
import { currentEnrolment, enrolmentCard, startEnrolment } from './enrolment.js';
import { problemContent } from '../webauthn.js';
import { addPasskeyDialog, passkeysBlocked } from './passkeys.js';

function attributes(app) {
  return (app.me && app.me.account_attributes) || [];
}

export function setupView(app) {
  const intro = h('p', { class: 'status status-warn', role: 'status' });
  const progress = h('ol', { class: 'setup-steps', 'aria-label': 'Steps' });
  const slot = h('div', { class: 'setup-slot' });
  const el = h(
    'div',
    { class: 'page' },
    h('div', { class: 'page-header' }, h('h1', { text: 'Set Up Two-Factor Authentication' })),
    intro,
    progress,
    slot,
  );
  let step = null;
  const withPassword = attributes(app).includes('PASSWORD_CHANGE_REQUIRED');

  function needsPassword() {
    return attributes(app).includes('PASSWORD_CHANGE_REQUIRED');
  }

  function renderIntro() {
    const onetime = attributes(app).includes('OTPW') || app.me.credentials === 'LOGIN_ONETIME_PASSWORD';
    intro.textContent = onetime
      ? 'You logged in with a one-time password from an administrator. ' +
        (needsPassword() ? 'Choose a new password, then set up ' : 'Set up ') +
        'your authenticator app again: the secret you had before stops working once you ' +
        'confirm the new one. Until then this session can do nothing else. Do not reload or ' +
        'close this page before you finish: the one-time password works only once.'
      : 'This system requires two-factor authentication, and your account has none set up ' +
        'yet. Set up an authenticator app (or add a passkey) now to continue: until then this ' +
        'session can do nothing else.';
    const names = [
      ...(withPassword ? [['password', 'Choose a new password']] : []),
      ['authenticator', 'Set up your authenticator app'],
      ['codes', 'Save recovery codes'],
    ];
    const current = names.findIndex(([key]) => key === step);
    replace(
      progress,
      names.map(([key, text], index) =>
        h('li', {
          class: `setup-step${index === current ? ' setup-step-current' : ''}${index < current ? ' setup-step-done' : ''}`,
          'aria-current': index === current ? 'step' : null,
          text: index < current ? `${text} (done)` : text,
        }),
      ),
    );
  }

  function next() {
    if (needsPassword()) showPassword();
    else showAuthenticator();
  }

  // -- a new password (after a one-time password) ------------------------------------------

  function showPassword() {
    step = 'password';
    renderIntro();
    const titleId = uid('password-title');
    const password = h('input', { type: 'password', name: 'new-password', autocomplete: 'new-password', required: true });
    const again = h('input', { type: 'password', name: 'new-password-again', autocomplete: 'new-password', required: true });
    const fields = {
      password: formField({
        label: 'New password',
        input: password,
        help: 'The one-time password works only once: from now on you log in with this password.',
      }),
      again: formField({ label: 'Confirm new password', input: again }),
    };
    const formError = h('div', { class: 'form-error', role: 'alert', hidden: true });
    const save = h('button', { type: 'submit', class: 'button button-primary', text: 'Save Password' });
    const form = h(
      'form',
      { class: 'form', novalidate: true },
      formError,
      fields.password.el,
      fields.again.el,
      h('div', { class: 'form-actions' }, save),
    );
    const heading = h('h2', { class: 'card-title', id: titleId, tabindex: '-1', text: 'Choose a New Password' });
    replace(slot, h('section', { class: 'card', 'aria-labelledby': titleId }, heading, form));
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      if (save.disabled) return;
      formError.hidden = true;
      fields.password.setError(null);
      fields.again.setError(null);
      if (!password.value) {
        fields.password.setError('Enter a new password.');
        password.focus();
        return;
      }
      if (password.value !== again.value) {
        fields.again.setError('The two passwords are not the same.');
        again.value = '';
        again.focus();
        return;
      }
      save.disabled = true;
      save.textContent = 'Saving…';
      try {
        await app.rpc.call('user.update', [app.me.id, { password: password.value }]);
      } catch (err) {
        save.disabled = false;
        save.textContent = 'Save Password';
        if (err instanceof RpcError && err.code === -32602 && err.extra.length) {
          const [attribute, text] = err.extra[0];
          const target = fieldPath(attribute) === 'password' ? fields.password : null;
          if (target) target.setError(sentence(text));
          else {
            formError.textContent = describeError(err);
            formError.hidden = false;
          }
        } else {
          formError.textContent = describeError(err);
          formError.hidden = false;
        }
        password.focus();
        return;
      }
      password.value = '';
      again.value = '';
      await app.refreshMe(); // PASSWORD_CHANGE_REQUIRED is gone from this session
      app.toast('Your new password is saved.', 'ok');
      next();
      focusStep();
    });
    password.focus();
  }

  // -- the authenticator: enrol + confirm ---------------------------------------------------

  async function showAuthenticator() {
    step = 'authenticator';
    renderIntro();
    if (currentEnrolment(app)) {
      showEnrolment();
      return;
    }
    replace(slot, h('p', { class: 'muted', role: 'status', text: 'Creating a new secret…' }));
    try {
      await startEnrolment(app, {});
    } catch (err) {
      const retry = h('button', { type: 'button', class: 'button button-secondary', text: 'Try Again' });
      retry.addEventListener('click', () => showAuthenticator());
      replace(
        slot,
        h('div', { class: 'form-error', role: 'alert' }, h('p', { text: describeError(err) })),
        h('div', { class: 'card-actions' }, retry),
      );
      retry.focus();
      return;
    }
    showEnrolment();
    focusStep();
  }

  function showEnrolment() {
    const card = enrolmentCard(app, {
      onConfirmed: async () => {
        step = 'codes';
        renderIntro();
        await app.finishSetup();
      },
    });
    replace(slot, card.el, passkeyCard());
  }

  /** "Use a passkey instead": a passkey as the second factor in place of the app. */
  function passkeyCard() {
    const titleId = uid('setup-passkey-title');
    const problem = passkeysBlocked();
    const button = h('button', { type: 'button', class: 'button button-secondary', text: 'Add a Passkey' });
    button.addEventListener('click', async () => {
      const added = await addPasskeyDialog(app);
      if (!added) return;
      app.enrolment = null; // the staged secret is not needed (it expires on the server)
      step = 'codes';
      renderIntro();
      await app.finishSetup({ passkey: true });
    });
    return h(
      'section',
      { class: 'card', 'aria-labelledby': titleId },
      h('h2', { class: 'card-title', id: titleId, text: 'Or Use a Passkey' }),
      h('p', {
        text:
          'Instead of an authenticator app, a passkey can be your second factor: a security ' +
          "key, your phone, or your computer's fingerprint or face unlock.",
      }),
      app.me.two_factor_config.secret_configured
        ? h('p', {
            class: 'muted',
            text:
              'Your current secret keeps working with a passkey: unset it afterwards on the ' +
              'Two-Factor Authentication screen if you lost the device that has it.',
          })
        : null,
      problem
        ? h('p', { class: 'note note-warn passkey-host-note', role: 'note' }, problemContent(problem))
        : h('div', { class: 'card-actions' }, button),
    );
  }

  function focusStep() {
    const heading = slot.querySelector('h2');
    if (heading) heading.focus();
  }

  return {
    el,
    update() {
      if (step) renderIntro();
    },
    mounted() {
      next();
    },
  };
}
