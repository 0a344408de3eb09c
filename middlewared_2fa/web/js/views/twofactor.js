// The Two-Factor Authentication screen (Settings > Two-Factor Authentication): the user's
// own 2FA status and the actions Renew Secret / Configure 2FA Secret, Show QR and Unset
// 2FA Secret, the confirmation step after a renewal, and the server clock.

import { h, replace, uid } from '../dom.js';
import { confirmDialog, openDialog } from '../dialog.js';
import { describeError } from '../errors.js';
import { formField } from '../form.js';
import { clockCard, secretBlock } from './parts.js';

function statusOf(config, pending) {
  if (pending && config.secret_configured) {
    return {
      key: 'confirming',
      tone: 'warn',
      text: config.global_enabled
        ? 'A new secret was created for your account and logging in already needs a code ' +
          'from it. Finish setting up your authenticator below before you log out.'
        : 'A new secret was created for your account. Finish setting up your authenticator ' +
          'below: logging in will need a code from it once an administrator enables ' +
          'two-factor authentication globally.',
    };
  }
  if (!config.global_enabled && !config.secret_configured) {
    return {
      key: 'disabled',
      tone: 'info',
      text:
        'Two-factor authentication is not enabled on this system. You can configure your ' +
        'personal settings now, but they have no effect until an administrator enables ' +
        'two-factor authentication globally.',
    };
  }
  if (!config.global_enabled) {
    return {
      key: 'disabled',
      tone: 'info',
      text:
        'Two-factor authentication is not enabled on this system. Your account has a secret, ' +
        'but logging in does not ask for a code until an administrator enables two-factor ' +
        'authentication globally.',
    };
  }
  if (!config.secret_configured) {
    return {
      key: 'not-configured',
      tone: 'warn',
      text:
        'Two-factor authentication is enabled on this system, but it is not set up for your ' +
        'account: logging in needs only your password. Configure a secret to protect your account.',
    };
  }
  return {
    key: 'configured',
    tone: 'ok',
    text:
      'Two-factor authentication is active for your account: logging in needs your password ' +
      'and a code from your authenticator app.',
  };
}

export function twoFactorView(app) {
  const status = h('p', { class: 'status', role: 'status' });
  const facts = h('dl', { class: 'facts' });
  const renewButton = h('button', { type: 'button', class: 'button button-primary' });
  const qrButton = h('button', { type: 'button', class: 'button button-secondary', text: 'Show QR' });
  const unsetButton = h('button', { type: 'button', class: 'button button-danger-outline', text: 'Unset 2FA Secret' });
  const mainTitleId = uid('tfa-title');
  const confirmSlot = h('div', { class: 'confirm-slot' });
  const clock = clockCard(app);
  const el = h(
    'div',
    { class: 'page' },
    h('div', { class: 'page-header' }, h('h1', { text: 'Two-Factor Authentication' })),
    h(
      'section',
      { class: 'card', 'aria-labelledby': mainTitleId },
      h('h2', { class: 'card-title', id: mainTitleId, text: 'User Two-Factor Authentication' }),
      status,
      facts,
      h('div', { class: 'card-actions' }, renewButton, qrButton, unsetButton),
    ),
    confirmSlot,
    clock.el,
  );
  let confirmCard = null;

  renewButton.addEventListener('click', () => configure());
  qrButton.addEventListener('click', () => showQr());
  unsetButton.addEventListener('click', () => unset());

  function update() {
    const config = app.me.two_factor_config;
    const pending = app.confirmPending && config.secret_configured;
    const s = statusOf(config, pending);
    status.className = `status status-${s.tone}`;
    status.dataset.status = s.key;
    status.textContent = s.text;
    replace(
      facts,
      h('dt', { text: 'Global two-factor authentication' }),
      h('dd', { text: config.global_enabled ? 'Enabled' : 'Disabled' }),
      h('dt', { text: 'Your secret' }),
      h('dd', { text: config.secret_configured ? 'Configured' : 'Not configured' }),
      config.secret_configured ? h('dt', { text: 'Codes' }) : null,
      config.secret_configured
        ? h('dd', { text: `${config.otp_digits} digits, a new one every ${config.interval} seconds` })
        : null,
    );
    renewButton.textContent = config.secret_configured ? 'Renew Secret' : 'Configure 2FA Secret';
    qrButton.hidden = !config.secret_configured;
    unsetButton.hidden = !config.secret_configured;
    if (pending && !confirmCard) {
      confirmCard = confirmStep();
      confirmSlot.replaceChildren(confirmCard);
    } else if (!pending && confirmCard) {
      confirmCard = null;
      confirmSlot.replaceChildren();
    }
    clock.update();
  }

  // -- Renew Secret / Configure 2FA Secret ------------------------------------------------

  async function configure() {
    const config = app.me.two_factor_config;
    const renewing = config.secret_configured;
    const interval = h(
      'select',
      { name: 'interval' },
      [30, 60].map((v) => h('option', { value: v, selected: v === config.interval, text: `${v} seconds` })),
    );
    const digits = h(
      'select',
      { name: 'otp_digits' },
      [6, 7, 8].map((v) => h('option', { value: v, selected: v === config.otp_digits, text: `${v} digits` })),
    );
    const title = renewing ? 'Renew Secret' : 'Configure 2FA Secret';
    const result = await openDialog({
      title,
      body: () => [
        h('p', {
          text: renewing
            ? 'A new secret replaces the current one at once: the codes of the authenticator ' +
              'app you set up before stop working. You then scan a new QR code and confirm it ' +
              'with a code.'
            : 'A secret is created for your account. You then scan its QR code with an ' +
              'authenticator app and confirm it with a code.',
        }),
        h(
          'fieldset',
          { class: 'fieldset' },
          h('legend', { text: 'Code options' }),
          h(
            'div',
            { class: 'field-grid' },
            formField({ label: 'Interval', input: interval }).el,
            formField({ label: 'Digits', input: digits }).el,
          ),
          h('p', {
            class: 'field-help',
            text:
              'Keep 30 seconds and 6 digits unless you know your app supports other values: ' +
              'many apps ignore them and then show codes that are never accepted.',
          }),
        ),
      ],
      actions: [
        { label: 'Cancel', kind: 'secondary', value: null },
        {
          label: renewing ? 'Renew' : 'Configure',
          kind: 'primary',
          run: async () => {
            await app.rpc.call('user.renew_2fa_secret', [
              app.username,
              { interval: Number(interval.value), otp_digits: Number(digits.value) },
            ]);
            return 'renewed';
          },
        },
      ],
    });
    if (result !== 'renewed') return;
    app.setConfirmPending(true);
    await app.refreshMe({ renewToken: true });
    if (confirmCard) confirmCard.querySelector('h2').focus();
  }

  // -- confirmation after a renewal ---------------------------------------------------------

  function confirmStep() {
    const titleId = uid('confirm-title');
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
      help: 'Enter the code the app shows now, to check that it has the new secret.',
    });
    const confirmButton = h('button', { type: 'submit', class: 'button button-primary', text: 'Confirm' });
    const cancelButton = h('button', { type: 'button', class: 'button button-secondary', text: 'Cancel Setup' });
    const form = h(
      'form',
      { class: 'form confirm-form', novalidate: true },
      codeField.el,
      h('div', { class: 'form-actions' }, cancelButton, confirmButton),
    );
    const card = h(
      'section',
      { class: 'card card-highlight', 'aria-labelledby': titleId },
      h('h2', { class: 'card-title', id: titleId, tabindex: '-1', text: 'Finish Setting Up Your Authenticator' }),
      h('ol', { class: 'steps' },
        h('li', { text: 'Scan the QR code with your authenticator app, or enter the key by hand.' }),
        h('li', { text: 'Enter the code the app shows to confirm that it works.' }),
      ),
      secretBlock(app),
      form,
    );
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      const value = code.value;
      if (!value.trim()) {
        codeField.setError('Enter the code your authenticator app shows.');
        code.focus();
        return;
      }
      confirmButton.disabled = true;
      cancelButton.disabled = true;
      try {
        const ok = await app.rpc.call('user.verify_twofactor_token', [app.username, value]);
        if (ok) {
          app.setConfirmPending(false);
          await app.refreshMe({ renewToken: true }); // the session is now LEVEL_2
          app.toast('Two-factor authentication is set up. From now on, logging in asks for a code from your app.', 'ok');
          update();
          renewButton.focus();
          return;
        }
        codeField.setError(
          'That code is not right. Enter the code your app shows now (each code works only ' +
            'once). If codes keep failing, check that the device’s clock is set automatically: ' +
            'codes depend on the time.',
        );
        code.value = '';
        code.focus();
      } catch (err) {
        codeField.setError(describeError(err));
      } finally {
        confirmButton.disabled = false;
        cancelButton.disabled = false;
      }
    });
    cancelButton.addEventListener('click', async () => {
      const confirmed = await confirmDialog({
        title: 'Cancel Setup',
        paragraphs: [
          'The secret you just created is removed, and your account is left without ' +
            'two-factor authentication. Delete the entry you added to your authenticator app too.',
          app.me.two_factor_config.global_enabled
            ? 'Global two-factor authentication is enabled: you will be asked to set it up again at your next login.'
            : null,
        ].filter(Boolean),
        confirmLabel: 'Cancel Setup',
        cancelLabel: 'Continue Setup',
        danger: true,
      });
      if (!confirmed) return;
      try {
        await app.rpc.call('user.unset_2fa_secret', [app.username]);
        app.setConfirmPending(false);
        await app.refreshMe({ renewToken: true });
        app.toast('Setup cancelled: your account has no two-factor secret.');
        renewButton.focus();
      } catch (err) {
        app.toast(describeError(err), 'bad');
      }
    });
    return card;
  }

  // -- Show QR ------------------------------------------------------------------------------

  function showQr() {
    openDialog({
      title: 'Two-Factor Authentication QR Code',
      wide: true,
      body: () => [
        h('p', { text: 'Scan this QR code with the authenticator app on your phone or computer.' }),
        secretBlock(app),
      ],
      actions: [{ label: 'Close', kind: 'primary', value: null }],
      initialFocus: (dialog) => dialog.querySelector('.button-primary'),
    });
  }

  // -- Unset 2FA Secret -----------------------------------------------------------------------

  function unset() {
    const globalOn = app.me.two_factor_config.global_enabled;
    openDialog({
      title: 'Unset 2FA Secret',
      body: () => [
        h('p', {
          text:
            'Remove the two-factor secret of your account? This reduces the security of your ' +
            'account: logging in will need only your password.',
        }),
        globalOn
          ? h('p', {
              class: 'note note-warn',
              text:
                'Global two-factor authentication is enabled, so you will be asked to set it up ' +
                'again at your next login (you can skip it).',
            })
          : null,
        h('p', { class: 'muted', text: 'Delete the entry from your authenticator app as well.' }),
      ],
      actions: [
        { label: 'Cancel', kind: 'secondary', value: null },
        {
          label: 'Unset Secret',
          kind: 'danger',
          run: async () => {
            await app.rpc.call('user.unset_2fa_secret', [app.username]);
            return 'unset';
          },
        },
      ],
      initialFocus: (dialog) => dialog.querySelector('.button-secondary'),
    }).then(async (result) => {
      if (result !== 'unset') return;
      app.setConfirmPending(false);
      await app.refreshMe({ renewToken: true });
      app.toast('The two-factor secret of your account was removed.');
      renewButton.focus();
    });
  }

  return { el, update, configure, mounted: update };
}
