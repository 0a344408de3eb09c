// Recovery codes (API.md §10): user.twofactor_recovery_codes makes a set of 10 codes and
// returns them once (the server keeps only salted hashes). The dialog shows them with
// Copy and Download; when it closes they are gone from the page. Each code works once in
// the login's code step, in place of a code from the authenticator app.

import { h } from '../dom.js';
import { openDialog } from '../dialog.js';
import { describeError } from '../errors.js';
import { fileSafe } from '../format.js';
import { copyButton } from './parts.js';

/** Codes in a set (API.md §10). */
export const CODES_PER_SET = 10;

/** The .txt file's name for `username`'s codes. */
export function recoveryFileName(username) {
  return `middlewared-2fa-recovery-codes-${fileSafe(username)}.txt`;
}

function fileText(username, codes) {
  return [
    `middlewared-2fa recovery codes for ${username} (${window.location.host})`,
    `Made ${new Date().toLocaleString()}.`,
    '',
    'Each code works once, in place of a code from your authenticator app, when you log in',
    '("Use a recovery code"). Making a new set makes these codes stop working.',
    '',
    ...codes,
    '',
  ].join('\n');
}

function download(name, text) {
  const url = URL.createObjectURL(new Blob([text], { type: 'text/plain;charset=utf-8' }));
  const link = h('a', { href: url, download: name, hidden: true });
  document.body.append(link);
  link.click();
  link.remove();
  // The download has started from the click; the URL is not needed after this task.
  setTimeout(() => URL.revokeObjectURL(url), 0);
}

/** The dialog step that shows `codes` (once). */
function codesStep(app, codes) {
  const username = app.username;
  return {
    title: 'Your Recovery Codes',
    wide: true,
    body: () => {
      const list = h(
        'ol',
        { class: 'recovery-codes', 'aria-label': 'Recovery codes' },
        codes.map((code) => h('li', {}, h('code', { text: code }))),
      );
      const status = h('span', { class: 'copy-status', role: 'status' });
      const copy = copyButton({
        text: codes.join('\n'),
        target: list,
        status,
        what: 'the codes are',
        small: false,
      });
      const save = h('button', {
        type: 'button',
        class: 'button button-secondary',
        text: 'Download',
        onclick: () => {
          download(recoveryFileName(username), fileText(username, codes));
          status.textContent = `Downloaded as ${recoveryFileName(username)}.`;
        },
      });
      return [
        h(
          'p',
          { class: 'note note-warn', role: 'note' },
          h('strong', { text: 'These codes are shown only once. ' }),
          'Save them now (in a password manager, as a download, or on paper) and keep them ' +
            'apart from the device with your authenticator app.',
        ),
        h('p', {
          text:
            'If you lose your authenticator, log in with your password and one of these codes ' +
            '("Use a recovery code"). Each code works once. Your previous recovery codes, if ' +
            'any, no longer work.',
        }),
        list,
        h('div', { class: 'card-actions recovery-actions' }, copy, save),
        status,
      ];
    },
    actions: [{ label: 'Done', kind: 'primary', value: 'done' }],
    initialFocus: (dialog) => dialog.querySelector('.recovery-actions .button'),
  };
}

/**
 * Make a new set of recovery codes and show it. With codes left (`remaining` > 0) a
 * confirmation comes first, since the current ones stop working. Resolves true when a new
 * set was made.
 */
export async function makeRecoveryCodes(app, { remaining = 0 } = {}) {
  let made = false;
  const fetchCodes = async () => {
    const codes = await app.rpc.call('user.twofactor_recovery_codes', [app.username]);
    made = true;
    return codes;
  };
  if (remaining > 0) {
    await openDialog({
      title: 'Make New Recovery Codes',
      wide: true,
      body: () => [
        h('p', {
          text:
            `You have ${remaining} unused recovery ${remaining === 1 ? 'code' : 'codes'}. A new ` +
            'set of 10 replaces them: the codes you have now stop working.',
        }),
      ],
      actions: [
        { label: 'Cancel', kind: 'secondary', value: null },
        {
          label: 'Make New Codes',
          kind: 'primary',
          run: async (ctx) => {
            ctx.render(codesStep(app, await fetchCodes()));
          },
        },
      ],
      initialFocus: (dialog) => dialog.querySelector('.button-secondary'),
    });
    return made;
  }
  let codes;
  try {
    codes = await fetchCodes();
  } catch (err) {
    app.toast(describeError(err), 'bad');
    return false;
  }
  await openDialog(codesStep(app, codes));
  return made;
}
