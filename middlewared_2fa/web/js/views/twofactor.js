// The Two-Factor Authentication screen (Settings > Two-Factor Authentication): the user's
// own 2FA status and the actions Renew Secret / Configure 2FA Secret, Show QR, recovery
// codes and Unset 2FA Secret, the confirmation step of a new secret (staged enrolment,
// API.md §4: enrol, scan, confirm with a code), the user's passkeys (views/passkeys.js,
// API.md §12) and the server clock. "Two-factor authentication is set up" means a
// second factor of any kind: a TOTP secret or a passkey (the 2FA account attribute);
// `secret_configured` is about the TOTP secret only.

import { h, replace, uid } from '../dom.js';
import { openDialog } from '../dialog.js';
import { describeError } from '../errors.js';
import { formField } from '../form.js';
import { currentEnrolment, enrolmentCard, startEnrolment } from './enrolment.js';
import { clockCard, secretBlock } from './parts.js';
import { recoveryCodesClause, hasSecondFactor, passkeysCard } from './passkeys.js';
import { CODES_PER_SET, makeRecoveryCodes } from './recovery.js';

/** At or below this many unused recovery codes the screen warns. */
const FEW_CODES = 2;

/** What the account's second factors are called in the status: "a secret", "a passkey"... */
function factorWords(factors) {
  if (factors.secret && factors.passkey) return 'a secret and a passkey';
  return factors.passkey ? 'a passkey' : 'a secret';
}

/** What logging in asks for after the password, for the "configured" status. */
function loginNeeds(factors) {
  if (factors.secret && factors.passkey) return 'a passkey or a code from your authenticator app';
  return factors.passkey ? 'one of your passkeys' : 'a code from your authenticator app';
}

/**
 * factors: {any, secret, passkey}: a second factor of any kind (the 2FA attribute), a TOTP
 * secret, a passkey.
 */
function statusOf(config, pending, factors) {
  if (pending) {
    const later = config.global_enabled
      ? ''
      : ' Logging in asks for codes only once an administrator enables two-factor ' +
        'authentication globally.';
    return {
      key: 'confirming',
      tone: 'warn',
      text: config.secret_configured
        ? 'A new secret was created for your account and waits for your confirmation below. ' +
          'Until you confirm it, your current secret keeps working: logging in still takes ' +
          'a code from the authenticator you use now.' + later
        : 'A secret was created for your account and waits for your confirmation below. ' +
          'Nothing changes for your account until you confirm it with a code from your ' +
          'authenticator app.' + later,
    };
  }
  if (!config.global_enabled && !factors.any) {
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
        `Two-factor authentication is not enabled on this system. Your account has ${factorWords(factors)}, ` +
        `but logging in does not ask for ${factors.secret ? 'a code' : 'it'} until an administrator enables two-factor ` +
        'authentication globally.',
    };
  }
  if (!factors.any) {
    return {
      key: 'not-configured',
      tone: 'warn',
      text:
        'Two-factor authentication is enabled on this system, but it is not set up for your ' +
        'account: logging in needs only your password. Configure a secret or add a passkey to ' +
        'protect your account.',
    };
  }
  return {
    key: 'configured',
    tone: 'ok',
    text:
      'Two-factor authentication is active for your account: logging in needs your password ' +
      `and ${loginNeeds(factors)}.`,
  };
}

export function twoFactorView(app) {
  const status = h('p', { class: 'status', role: 'status' });
  const facts = h('dl', { class: 'facts' });
  const recoveryNote = h('p', { class: 'note note-warn recovery-note', hidden: true });
  const renewButton = h('button', { type: 'button', class: 'button button-primary' });
  const qrButton = h('button', { type: 'button', class: 'button button-secondary', text: 'Show QR' });
  const codesButton = h('button', { type: 'button', class: 'button button-secondary' });
  const unsetButton = h('button', { type: 'button', class: 'button button-danger-outline', text: 'Unset 2FA Secret' });
  const mainTitleId = uid('tfa-title');
  const confirmSlot = h('div', { class: 'confirm-slot' });
  const offerSlot = h('div', { class: 'offer-slot' });
  const clock = clockCard(app);
  const passkeys = passkeysCard(app, {
    onChange: () => update(),
    recoveryLeft: () => (recovery && !recovery.error ? recovery.remaining : null),
  });
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
      recoveryNote,
      h('div', { class: 'card-actions' }, renewButton, qrButton, codesButton, unsetButton),
    ),
    offerSlot,
    confirmSlot,
    passkeys.el,
    clock.el,
  );
  let confirmCard = null;
  let offerCard = null;
  // Unused recovery codes (user.twofactor_config.recovery_codes_remaining): null while
  // loading; re-read when the secret changes and after a new set.
  let recovery = null;
  let recoveryFor = null;
  let recoveryTicket = 0; // only the latest answer counts
  let destroyed = false;

  /** {any, secret, passkey}: the account's second factors as far as the page knows. */
  function factors() {
    const config = app.me.two_factor_config;
    const any = hasSecondFactor(app);
    const count = passkeys.count();
    // Until the list is read: a factor that is not the secret is a passkey.
    const passkey = count === null ? any && !config.secret_configured : count > 0;
    return { any: any || config.secret_configured || passkey, secret: config.secret_configured, passkey };
  }

  renewButton.addEventListener('click', () => configure());
  qrButton.addEventListener('click', () => showQr());
  codesButton.addEventListener('click', () => recoveryCodes(codesButton));
  unsetButton.addEventListener('click', () => unset());

  /** What the recovery count depends on: re-read when it changes. */
  function recoveryKey() {
    return JSON.stringify([app.me.two_factor_config, factors()]);
  }

  async function loadRecovery() {
    recoveryFor = recoveryKey();
    recoveryTicket += 1;
    const ticket = recoveryTicket;
    // Recovery codes stand in for any second factor (API.md §10, §12).
    if (!factors().any) {
      recovery = { remaining: 0 };
      return;
    }
    recovery = null;
    let next;
    try {
      const answer = await app.rpc.call('user.twofactor_config', [app.username]);
      next = { remaining: Number(answer.recovery_codes_remaining) || 0 };
    } catch (err) {
      next = { error: describeError(err) };
    }
    if (destroyed || !app.me || ticket !== recoveryTicket) return;
    recovery = next;
    update();
  }

  function recoveryText() {
    if (!recovery) return 'Checking…';
    if (recovery.error) return 'Unknown';
    return `${recovery.remaining} of ${CODES_PER_SET} left`;
  }

  function updateRecoveryNote(has) {
    const remaining = recovery && !recovery.error ? recovery.remaining : null;
    if (!has.any || remaining === null || remaining > FEW_CODES) {
      recoveryNote.hidden = true;
      recoveryNote.textContent = '';
      return;
    }
    recoveryNote.textContent =
      remaining === 0
        ? `You have no recovery codes. If you lose your ${has.secret ? 'authenticator app' : 'passkeys'}, only an ` +
          'administrator can let you in again. Make a set of recovery codes and keep it ' +
          'somewhere safe.'
        : `Only ${remaining} recovery ${remaining === 1 ? 'code is' : 'codes are'} left. Make ` +
          'a new set before they run out (it replaces the codes you have now).';
    recoveryNote.hidden = false;
  }

  function update() {
    if (destroyed || !app.me) return;
    const config = app.me.two_factor_config;
    const has = factors();
    if (recoveryFor !== recoveryKey()) loadRecovery(); // update() again with the answer
    const enrolment = currentEnrolment(app);
    const s = statusOf(config, Boolean(enrolment), has);
    const count = passkeys.count();
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
      h('dt', { text: 'Passkeys' }),
      h('dd', {
        class: 'passkey-count',
        text: count === null ? 'Checking…' : count === 0 ? 'None' : `${count} ${count === 1 ? 'passkey' : 'passkeys'}`,
      }),
      has.any ? h('dt', { text: 'Recovery codes' }) : null,
      has.any ? h('dd', { class: 'recovery-count', text: recoveryText() }) : null,
    );
    updateRecoveryNote(has);
    renewButton.textContent = config.secret_configured ? 'Renew Secret' : 'Configure 2FA Secret';
    qrButton.hidden = !config.secret_configured;
    unsetButton.hidden = !config.secret_configured;
    codesButton.hidden = !has.any;
    codesButton.textContent =
      recovery && recovery.remaining > 0 ? 'New Recovery Codes' : 'Make Recovery Codes';
    if (enrolment && !confirmCard) {
      confirmCard = enrolmentCard(app, { onConfirmed: confirmed, onCancel: cancelled });
      confirmSlot.replaceChildren(confirmCard.el);
    } else if (!enrolment && confirmCard) {
      confirmCard = null;
      confirmSlot.replaceChildren();
    }
    const offer = app.offerRecovery && has.any && !enrolment;
    if (offer && !offerCard) {
      offerCard = recoveryOffer();
      offerSlot.replaceChildren(offerCard);
    } else if (!offer && offerCard) {
      offerCard = null;
      offerSlot.replaceChildren();
    }
    clock.update();
  }

  // -- Renew Secret / Configure 2FA Secret: enrol, then confirm -------------------------------

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
            ? 'A new secret is created for your account. You scan its QR code and confirm it ' +
              'with a code from your app; only then does it replace the current one. Until ' +
              'you confirm it (within 15 minutes), your current secret keeps working.'
            : 'A secret is created for your account. You then scan its QR code with an ' +
              'authenticator app and confirm it with a code (within 15 minutes); nothing ' +
              'changes for your account until you do.',
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
            await startEnrolment(app, { interval: Number(interval.value), otp_digits: Number(digits.value) });
            return 'enrolled';
          },
        },
      ],
    });
    if (result !== 'enrolled') return;
    app.offerRecovery = false;
    confirmCard = null; // a new pending secret replaces the one shown, if any
    confirmSlot.replaceChildren();
    update();
    if (confirmCard) confirmCard.focus();
  }

  async function confirmed() {
    app.offerRecovery = true;
    // The other sessions and every re-login token of the user ended; this session is
    // LEVEL_2 now (API.md §4, §9): keep a token that matches it.
    await app.refreshMe({ renewToken: true });
    app.toast(
      app.me.two_factor_config.global_enabled
        ? 'Two-factor authentication is set up. From now on, logging in asks for a code from your app.'
        : 'Two-factor authentication is set up. Logging in asks for a code from your app once ' +
            'it is enabled globally.',
      'ok',
    );
    update();
    const heading = offerCard && offerCard.querySelector('h2');
    if (heading) heading.focus();
    else renewButton.focus();
  }

  function cancelled() {
    update();
    app.toast(
      'Setup cancelled: nothing changed for your account. Delete the entry you added to your ' +
        'authenticator app, if any.',
    );
    renewButton.focus();
  }

  // -- recovery codes -------------------------------------------------------------------------

  async function recoveryCodes(opener) {
    opener.disabled = true;
    try {
      const made = await makeRecoveryCodes(app, { remaining: recovery ? recovery.remaining || 0 : 0 });
      if (made) {
        app.offerRecovery = false;
        recoveryFor = null; // re-read the count
        update();
      }
    } finally {
      opener.disabled = false;
    }
  }

  function recoveryOffer() {
    const titleId = uid('offer-title');
    const make = h('button', { type: 'button', class: 'button button-primary', text: 'Make Recovery Codes' });
    const later = h('button', { type: 'button', class: 'button button-secondary', text: 'Not Now' });
    make.addEventListener('click', () => recoveryCodes(make));
    later.addEventListener('click', () => {
      app.offerRecovery = false;
      update();
      codesButton.focus();
    });
    return h(
      'section',
      { class: 'card card-highlight', 'aria-labelledby': titleId },
      h('h2', { class: 'card-title', id: titleId, tabindex: '-1', text: 'Save Recovery Codes' }),
      h('p', {
        text: factors().secret
          ? 'Recovery codes let you log in if you lose the device with your authenticator app: ' +
            'each of the 10 codes works once, in place of a code from the app. They are shown ' +
            'only once, so keep them somewhere safe.'
          : 'Recovery codes let you log in if you lose your passkey: each of the 10 codes works ' +
            'once, in place of the passkey. They are shown only once, so keep them somewhere safe.',
      }),
      h('div', { class: 'card-actions' }, later, make),
    );
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
    const passkeyLeft = factors().passkey; // the passkeys stay: 2FA stays set up
    const codesLeft = recovery && !recovery.error ? recovery.remaining : null;
    openDialog({
      title: 'Unset 2FA Secret',
      body: () => [
        passkeyLeft
          ? h('p', {
              text:
                'Remove the two-factor secret of your account? Codes from your authenticator ' +
                'app stop working; logging in then needs your password and one of your passkeys.',
            })
          : h('p', {
              text:
                'Remove the two-factor secret of your account? This reduces the security of your ' +
                `account: logging in will need only your password${recoveryCodesClause(codesLeft, 'your')}.`,
            }),
        globalOn && !passkeyLeft
          ? h('p', {
              class: 'note note-warn',
              text:
                'Global two-factor authentication is enabled, so you will be asked to set it up ' +
                'again at your next login (you can skip it, unless an administrator enforces ' +
                'two-factor authentication: then this session, too, can only set up a new one).',
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
      app.offerRecovery = false;
      await app.refreshMe({ renewToken: true });
      app.toast('The two-factor secret of your account was removed.');
      renewButton.focus();
    });
  }

  return {
    el,
    update,
    configure,
    mounted() {
      update();
      passkeys.load();
    },
    onCollectionUpdate({ collection, fields }) {
      // A change of the account (a passkey added or removed in another session ends this
      // one; an administrator's removal does not): read the list again.
      if (collection === 'user.query' && fields && fields.username === app.username) passkeys.load();
    },
    /** Open the Passkeys card's Add Passkey dialog (the setup prompt's "Add a Passkey"). */
    addPasskey() {
      return passkeys.add();
    },
    /** Focus the recovery codes offer, when it is shown (after the setup screen). */
    focusOffer() {
      const heading = offerCard && offerCard.querySelector('h2');
      if (heading) heading.focus();
    },
    destroy() {
      destroyed = true;
      passkeys.destroy();
    },
  };
}
