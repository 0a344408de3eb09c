// Parts shared by the screens: the server clock card, the QR code + secret block and the
// Copy button.

import { h, replace, uid } from '../dom.js';
import { describeError } from '../errors.js';
import { RpcError } from '../rpc.js';
import { clockSummary, clockTime, groupSecret, parseProvisioningUri } from '../format.js';

/**
 * "Check Now": asks the daemon to check its clock against NTP now
 * (system.time_sync.check through app.loadTimeSync); disabled while the check runs, a
 * failure shown as a message. Used by the clock card and System > Time.
 */
export function checkNowButton(app) {
  const checkButton = h('button', { type: 'button', class: 'button button-secondary', text: 'Check Now' });
  checkButton.addEventListener('click', async () => {
    checkButton.disabled = true;
    checkButton.textContent = 'Checking…';
    try {
      await app.loadTimeSync({ check: true });
    } catch (err) {
      app.toast(describeError(err), 'bad');
    } finally {
      checkButton.disabled = false;
      checkButton.textContent = 'Check Now';
    }
  });
  return checkButton;
}

/**
 * The "Server Clock" card (system.time_sync.status, API.md §6). TOTP codes depend on
 * the server's clock, so every 2FA screen shows it. Returns {el, update()}.
 */
export function clockCard(app) {
  const titleId = uid('clock-title');
  const badge = h('span', { class: 'badge' });
  const text = h('p', { class: 'clock-text' });
  const meta = h('p', { class: 'muted clock-meta' });
  const checkButton = checkNowButton(app);
  const actions = h('div', { class: 'card-actions' }, checkButton);
  const el = h(
    'section',
    { class: 'card clock-card', 'aria-labelledby': titleId },
    h('div', { class: 'card-header' }, h('h2', { class: 'card-title', id: titleId, text: 'Server Clock' }), badge),
    text,
    meta,
    actions,
  );

  function update() {
    actions.hidden = !app.canWriteSecurity;
    const status = app.timeSync;
    if (!status) {
      badge.className = 'badge';
      badge.textContent = app.timeSyncError ? 'Unknown' : 'Checking';
      text.textContent = app.timeSyncError || 'Checking the server clock…';
      meta.textContent = '';
      return;
    }
    const summary = clockSummary(status);
    badge.className = `badge badge-${summary.tone}`;
    badge.textContent = summary.label;
    text.textContent = summary.text;
    const servers = (status.servers || []).map((s) => (s.port === 123 ? s.address : `${s.address}:${s.port}`));
    // Without an NTP server nothing was compared, so no "Checked at" beside it.
    if (status.state === 'UNCONFIGURED' || !status.checked_at) {
      meta.textContent = '';
    } else {
      meta.textContent =
        `Checked at ${clockTime(status.checked_at)}` +
        (servers.length ? ` against ${servers.join(', ')}.` : '.');
    }
  }

  update();
  return { el, update };
}

/**
 * A Copy button: puts `text` on the clipboard and says so in `status` (a role=status
 * element). Without the Clipboard API (browsers offer it only on https:// pages and on
 * localhost) it selects `target` instead, for Ctrl+C. `what` names the thing in that
 * message ("the key is selected").
 */
export function copyButton({ text, target, status, what, label = 'Copy', small = true }) {
  const button = h('button', {
    type: 'button',
    class: small ? 'button button-secondary button-small' : 'button button-secondary',
    text: label,
  });
  button.addEventListener('click', async () => {
    try {
      if (!navigator.clipboard) throw new Error('no clipboard');
      await navigator.clipboard.writeText(typeof text === 'function' ? text() : text);
      status.textContent = 'Copied to the clipboard.';
    } catch (err) {
      window.getSelection().selectAllChildren(target);
      status.textContent = `Copying is not available here: ${what} selected, press Ctrl+C.`;
    }
  });
  return button;
}

/**
 * The QR code of the provisioning URI, the key for manual entry with a copy button, and
 * which apps work. Without `uri`: the active secret (user.twofactor_config and
 * user.twofactor_qr, loaded when created). With `uri`: the pending secret of a staged
 * enrolment (user.twofactor_enroll gave the URI; user.twofactor_qr {pending: true} draws it).
 */
export function secretBlock(app, { uri: pendingUri } = {}) {
  const el = h('div', { class: 'secret-block', 'aria-busy': 'true' }, h('p', { class: 'muted', text: 'Loading the QR code…' }));
  const username = app.username;
  const loading = pendingUri
    ? app.rpc
        .call('user.twofactor_qr', [username, { pending: true, format: 'svg', scale: 5 }])
        .then((qr) => [{ provisioning_uri: pendingUri }, qr])
    : Promise.all([
        app.rpc.call('user.twofactor_config', [username]),
        app.rpc.call('user.twofactor_qr', [username, { format: 'svg', scale: 5 }]),
      ]);
  loading
    .then(([config, qr]) => {
      el.setAttribute('aria-busy', 'false');
      if (!config.provisioning_uri) {
        replace(el, h('p', { class: 'form-error', text: 'Your account has no two-factor secret.' }));
        return;
      }
      if (!/^data:image\/(svg\+xml|png)[;,]/.test(qr.data_uri)) {
        replace(el, h('p', { class: 'form-error', text: 'The server sent a QR code this page cannot show.' }));
        return;
      }
      replace(el, ...render(parseProvisioningUri(config.provisioning_uri), config.provisioning_uri, qr.data_uri));
    })
    .catch((err) => {
      el.setAttribute('aria-busy', 'false');
      const text =
        pendingUri && err instanceof RpcError && err.errname === 'EINVAL'
          ? 'This new secret has expired (it waits 15 minutes for its confirmation). Start again.'
          : describeError(err);
      replace(el, h('p', { class: 'form-error', role: 'alert', text }));
    });

  function render(parts, uri, dataUri) {
    const secretId = uid('secret');
    const copyStatus = h('span', { class: 'copy-status', role: 'status' });
    // One unbreakable span per group of four: a narrow dialog wraps between groups only.
    const groups = groupSecret(parts.secret).split(' ');
    const secretText = h(
      'code',
      { class: 'secret', id: secretId },
      groups.map((group, i) => [h('span', { class: 'secret-group', text: group }), i < groups.length - 1 ? ' ' : null]),
    );
    const copy = copyButton({ text: parts.secret, target: secretText, status: copyStatus, what: 'the key is' });
    copy.setAttribute('aria-describedby', secretId);
    const nonDefault = parts.digits !== 6 || parts.period !== 30;
    const label = parts.issuer ? `${parts.issuer}: ${parts.account}` : parts.account;
    return [
      h(
        'figure',
        { class: 'qr' },
        h('img', {
          class: 'qr-image',
          src: dataUri,
          alt: `QR code to add ${label} to an authenticator app`,
        }),
        h('figcaption', { class: 'muted', text: label }),
      ),
      h(
        'div',
        { class: 'secret-details' },
        h('p', { class: 'secret-label', text: 'Can’t scan it? Enter this key in the app instead:' }),
        h('div', { class: 'secret-row' }, secretText, copy),
        copyStatus,
        h(
          'dl',
          { class: 'facts facts-compact' },
          h('dt', { text: 'Account' }),
          h('dd', { text: parts.account }),
          h('dt', { text: 'Type' }),
          h('dd', { text: 'Time-based (TOTP)' }),
          h('dt', { text: 'Code length' }),
          h('dd', { text: `${parts.digits} digits` }),
          h('dt', { text: 'New code every' }),
          h('dd', { text: `${parts.period} seconds` }),
        ),
        h(
          'p',
          { class: 'muted' },
          'Any authenticator app for time-based one-time passwords (TOTP, RFC 6238) works, ' +
            'for example Google Authenticator, Microsoft Authenticator, Aegis, FreeOTP, ' +
            '1Password, Bitwarden or KeePassXC.',
        ),
        nonDefault
          ? h(
              'p',
              { class: 'note note-warn' },
              `This secret uses ${parts.digits}-digit codes and a ${parts.period}-second period. ` +
                'Some apps ignore these settings and then show codes that are never accepted: ' +
                'use an app that honours them, or renew the secret with 6 digits and 30 seconds.',
            )
          : null,
        h(
          'details',
          { class: 'uri-details' },
          h('summary', { text: 'Show the setup link (otpauth URI)' }),
          h('code', { class: 'uri', text: uri }),
        ),
      ),
    ];
  }

  return el;
}
