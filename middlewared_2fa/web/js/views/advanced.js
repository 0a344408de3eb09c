// Advanced Settings > Global Two-Factor Authentication (auth.twofactor.config / update,
// API.md §4), for SYSTEM_SECURITY_WRITE and FULL_ADMIN. Server validation errors
// (-32602, data.extra = [[attribute, message, errno]]) are shown at their fields; the
// clock check that refuses enabling 2FA on a skewed clock is explained in plain words.
// `enforce` needs `enabled`: the switch is off and disabled while 2FA is off, so turning
// 2FA off also turns enforce off in the same call, as the server requires.

import { h, uid } from '../dom.js';
import { describeError, fieldPath, sentence } from '../errors.js';
import { formField } from '../form.js';
import { offsetWords } from '../format.js';
import { RpcError } from '../rpc.js';
import { clockCard } from './parts.js';

/** What window w means: codes up to w*interval seconds early or late are accepted. */
function windowMeaning(value) {
  const w = Number(value);
  if (!Number.isInteger(w) || w < 0 || String(value).trim() === '') {
    return 'Enter a whole number of time steps from 0 to 10.';
  }
  if (w > 10) return 'The window can be at most 10 time steps.';
  if (w === 0) {
    return 'Window 0: only the code of the current 30-second step is accepted (no tolerance for clock drift).';
  }
  return (
    `Window ${w}: codes up to ${w * 30} s early or late are accepted with 30-second codes ` +
    `(${w * 60} s with 60-second codes), that is ${2 * w + 1} codes at any moment.`
  );
}

export function advancedView(app) {
  const titleId = uid('global-title');
  const enabled = h('input', { type: 'checkbox', name: 'enabled' });
  const enforce = h('input', { type: 'checkbox', name: 'enforce' });
  const windowInput = h('input', { type: 'number', name: 'window', min: 0, max: 10, step: 1, inputmode: 'numeric', class: 'input-narrow' });
  const ssh = h('input', { type: 'checkbox', name: 'ssh' });
  const issuer = h('input', { type: 'text', name: 'issuer', maxlength: 64, autocomplete: 'off', spellcheck: 'false' });
  const windowHelp = h('span', { class: 'window-meaning' });
  const fields = {
    enabled: formField({
      label: 'Enable Two-Factor Authentication Globally',
      input: enabled,
      inline: true,
      help:
        'Users with a second factor (an authenticator app or a passkey) must use it at every ' +
        'login. Users without one are asked to set one up.',
    }),
    enforce: formField({
      label: 'Enforce Two-Factor Authentication',
      input: enforce,
      inline: true,
      help:
        'Every user must use two factors. Users without a second factor can then only set ' +
        'one up (an authenticator app or a passkey) after logging in with their password; ' +
        'nothing else works until they do. ' +
        'Turning it on needs a session that logged in with two factors (so that you cannot ' +
        'lock yourself out), and it ends the sessions that used a password only.',
    }),
    window: formField({
      label: 'Window',
      input: windowInput,
      help: [
        'Extra time steps accepted before and after the current one, to allow for clocks that drift. ',
        windowHelp,
      ],
    }),
    'services.ssh': formField({
      label: 'Enable Two-Factor Auth for SSH',
      input: ssh,
      inline: true,
      help: 'SSH logins with a password then also need a code (PAM OATH).',
    }),
    issuer: formField({
      label: 'Issuer',
      input: issuer,
      help: 'The name authenticator apps show next to the account (1 to 64 characters, no colon). New QR codes use it.',
    }),
  };
  const formError = h('div', { class: 'form-error', role: 'alert', hidden: true });
  const staleNote = h('div', { class: 'note note-info', role: 'status', hidden: true });
  const saveButton = h('button', { type: 'submit', class: 'button button-primary', text: 'Save' });
  const resetButton = h('button', { type: 'button', class: 'button button-secondary', text: 'Reset' });
  const form = h(
    'form',
    { class: 'form', novalidate: true, 'aria-labelledby': titleId },
    staleNote,
    formError,
    fields.enabled.el,
    fields.enforce.el,
    fields.window.el,
    fields['services.ssh'].el,
    fields.issuer.el,
    h('div', { class: 'form-actions' }, resetButton, saveButton),
  );
  const clock = clockCard(app);
  const el = h(
    'div',
    { class: 'page' },
    h('div', { class: 'page-header' }, h('h1', { text: 'Advanced Settings' })),
    h(
      'section',
      { class: 'card', 'aria-labelledby': titleId },
      h('h2', { class: 'card-title', id: titleId, text: 'Global Two-Factor Authentication' }),
      form,
    ),
    clock.el,
  );
  let dirty = false;
  let saving = false;
  let shown = null; // the configuration the form was filled from (JSON)

  function fill(config) {
    shown = JSON.stringify(config);
    enabled.checked = Boolean(config.enabled);
    enforce.checked = Boolean(config.enforce);
    enforce.disabled = !enabled.checked;
    windowInput.value = String(config.window);
    ssh.checked = Boolean(config.services && config.services.ssh);
    issuer.value = config.issuer || '';
    windowHelp.textContent = windowMeaning(windowInput.value);
    dirty = false;
    staleNote.hidden = true;
  }

  function clearErrors() {
    formError.hidden = true;
    formError.replaceChildren();
    for (const f of Object.values(fields)) f.setError(null);
  }

  enabled.addEventListener('change', () => {
    if (!enabled.checked) enforce.checked = false;
    enforce.disabled = !enabled.checked;
  });
  form.addEventListener('input', () => {
    dirty = true;
    windowHelp.textContent = windowMeaning(windowInput.value);
  });
  resetButton.addEventListener('click', () => {
    clearErrors();
    if (app.global) fill(app.global);
  });

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    if (saving) return;
    clearErrors();
    const windowValue = windowInput.value.trim();
    if (!/^\d+$/.test(windowValue)) {
      fields.window.setError('Enter a whole number of time steps from 0 to 10.');
      windowInput.focus();
      return;
    }
    const update = {
      enabled: enabled.checked,
      enforce: enabled.checked && enforce.checked,
      window: Number(windowValue),
      services: { ssh: ssh.checked },
      issuer: issuer.value,
    };
    const enabling = update.enabled && !(app.global && app.global.enabled);
    saving = true;
    saveButton.disabled = true;
    saveButton.textContent = enabling ? 'Checking the clock…' : 'Saving…';
    try {
      app.global = await app.rpc.call('auth.twofactor.update', [update]);
      fill(app.global);
      app.toast('Global two-factor authentication settings saved.', 'ok');
      app.refreshMe();
    } catch (err) {
      await showErrors(err, enabling);
    } finally {
      saving = false;
      saveButton.disabled = false;
      saveButton.textContent = 'Save';
    }
  });

  async function showErrors(err, enabling) {
    if (!(err instanceof RpcError) || err.code !== -32602 || !err.extra.length) {
      formError.textContent = describeError(err);
      formError.hidden = false;
      return;
    }
    const unplaced = [];
    let first = null;
    for (const [attribute, message] of err.extra) {
      let path = fieldPath(attribute);
      if (path === 'services') path = 'services.ssh';
      const target = fields[path];
      if (path === 'enabled' && enabling) {
        // The clock gate (API.md §4, §6): say what is wrong and show the measured offset.
        const status = await app.loadTimeSync();
        const words =
          status && status.state === 'SKEWED'
            ? `The server clock is ${offsetWords(status.offset)}, more than the ` +
              `${Number(status.max_offset).toFixed(0)} s tolerated, so codes from ` +
              'authenticator apps would not match. Fix the server clock (NTP), then enable ' +
              'two-factor authentication again.'
            : null;
        formError.replaceChildren(
          h('strong', { text: 'Two-factor authentication was not enabled: the server clock is wrong.' }),
          words ? h('p', { text: words }) : null,
          h('p', { class: 'muted', text: `Details from the server: ${sentence(message)}` }),
        );
        formError.hidden = false;
        fields.enabled.setError('Cannot be enabled while the server clock is wrong.');
        first = first || enabled;
      } else if (target) {
        target.setError(sentence(message));
        first = first || target.input;
      } else {
        unplaced.push(`${attribute}: ${message}`);
      }
    }
    if (unplaced.length) {
      formError.append(h('p', { text: sentence(unplaced.join('; ')) }));
      formError.hidden = false;
    }
    if (first) first.focus();
  }

  function update() {
    if (app.global && !dirty && !saving) fill(app.global);
    else if (app.global && dirty && !saving && changedElsewhere()) {
      staleNote.replaceChildren(
        'These settings were changed elsewhere. ',
        h('button', {
          type: 'button',
          class: 'link-button',
          text: 'Load the new values',
          onclick: () => {
            clearErrors();
            fill(app.global);
          },
        }),
      );
      staleNote.hidden = false;
    }
    clock.update();
  }

  function changedElsewhere() {
    return shown !== null && shown !== JSON.stringify(app.global);
  }

  return {
    el,
    update,
    mounted() {
      if (app.global) fill(app.global);
      else {
        app.rpc
          .call('auth.twofactor.config')
          .then((config) => {
            app.global = config;
            fill(config);
          })
          .catch((err) => {
            formError.textContent = describeError(err);
            formError.hidden = false;
          });
      }
      clock.update();
    },
  };
}
