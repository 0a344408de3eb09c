// The Passkeys card of the Two-Factor Authentication screen (API.md §12): the user's own
// passkeys (user.webauthn_list) by name, when each was added and last used, Add Passkey
// (a name, then user.webauthn_register_begin -> navigator.credentials.create ->
// user.webauthn_register_finish) and Remove (user.webauthn_delete, after a confirmation).
//
// Adding or removing a passkey is a credential change: the user's other sessions and every
// re-login token end (API.md §9), so the page takes a new token afterwards, as after a new
// secret. A first passkey makes two-factor authentication apply to the account and this
// session a two-factor one. The contract has no events for passkeys: the list is read when
// the screen opens, after each change made here and on user.query events of the own user.

import { append, h, replace, uid } from '../dom.js';
import { openDialog } from '../dialog.js';
import { describeError, fieldPath, sentence } from '../errors.js';
import { formField } from '../form.js';
import { dateTime, wireMillis } from '../format.js';
import { RpcError } from '../rpc.js';
import { createPasskey, pageProblem, passkeyMessage, problemContent } from '../webauthn.js';
import { stackedTable } from './table.js';

/** True when the account has a second factor of any kind (auth.me, API.md §12). */
export function hasSecondFactor(app) {
  return Boolean(app.me) && (app.me.account_attributes || []).includes('2FA');
}

/**
 * Why passkeys cannot be added from this page (null when they can): a problem of
 * webauthn.js, put into words (with the address to open as a link) by problemContent().
 */
export function passkeysBlocked() {
  return pageProblem(null);
}

/** The server's words for a refusal: -32602 messages without their attribute paths. */
function refusal(err) {
  if (err instanceof RpcError && err.code === -32602 && err.extra.length) {
    return sentence(err.extra.map(([, message]) => message).join('; '));
  }
  if (err instanceof RpcError && err.errname === 'EACCES' && /factor/i.test(err.message)) {
    return sentence(err.message);
  }
  return describeError(err);
}

/** A -32602 answer about the name shown at the name field; true when it was one. */
function nameError(err, field) {
  if (!(err instanceof RpcError) || err.code !== -32602 || !err.extra.length) return false;
  const about = err.extra.filter(([attribute]) => /(^|\.)name$/.test(fieldPath(attribute)));
  if (!about.length) return false;
  field.setError(sentence(about.map(([, message]) => message).join('; ')));
  field.input.focus();
  return true;
}

/**
 * The Add Passkey dialog: a name, then user.webauthn_register_begin ->
 * navigator.credentials.create -> user.webauthn_register_finish. Resolves with the new
 * PasskeyEntry, or null when cancelled. Refusals are shown in the dialog, which stays open.
 */
export async function addPasskeyDialog(app) {
  const input = h('input', {
    type: 'text',
    name: 'passkey-name',
    autocomplete: 'off',
    spellcheck: 'false',
    maxlength: 64,
    required: true,
  });
  const field = formField({
    label: 'Name',
    input,
    help: 'To tell your passkeys apart, for example “Laptop” or “YubiKey”.',
  });
  let added = null;
  const result = await openDialog({
    title: 'Add Passkey',
    body: () => [
      h('p', {
        text:
          'Name the passkey, then follow your browser: it asks for your security key, phone ' +
          'or fingerprint. Your other sessions end when the passkey is added.',
      }),
      field.el,
    ],
    actions: [
      { label: 'Cancel', kind: 'secondary', value: null },
      {
        label: 'Continue',
        kind: 'primary',
        run: async (ctx) => {
          field.setError(null);
          const name = input.value.trim();
          if (!name) {
            field.setError('Enter a name for the passkey.');
            input.focus();
            return undefined;
          }
          let begun;
          try {
            begun = await app.rpc.call('user.webauthn_register_begin', [app.username, { name }]);
          } catch (err) {
            if (!nameError(err, field)) ctx.setError(refusal(err));
            return undefined;
          }
          let credential;
          try {
            credential = await createPasskey(begun.options);
          } catch (err) {
            ctx.setError(passkeyMessage(err, { creating: true }));
            return undefined;
          }
          try {
            added = await app.rpc.call('user.webauthn_register_finish', [app.username, credential]);
          } catch (err) {
            ctx.setError(refusal(err));
            return undefined;
          }
          return 'added';
        },
      },
    ],
  });
  return result === 'added' ? added : null;
}

/**
 * ", and your recovery codes stop working" for the warning about the last second factor,
 * or nothing when there are none: `left` unused recovery codes (null or undefined when not
 * known: "if any"). `whose`: "your" or "their"; `what`: what happens to them.
 */
/**
 * The table of passkeys (PasskeyEntry list, API.md §12): name, added, last used, and a
 * Remove button per row (`data-passkey-id`) calling `onRemove(entry)`; `empty` (a
 * sentence) when there are none. Used by the Passkeys card and the Users screen.
 */
export function passkeyTable(entries, { caption, empty, onRemove }) {
  if (!entries.length) return h('p', { class: 'muted', text: empty });
  const rows = entries.map((entry) => {
    const remover = h('button', {
      type: 'button',
      class: 'button button-danger-outline button-small',
      text: 'Remove',
      'aria-label': `Remove ${entry.name}`,
      dataset: { passkeyId: String(entry.id) },
    });
    remover.addEventListener('click', () => onRemove(entry));
    return {
      attrs: { dataset: { passkeyId: String(entry.id) } },
      cells: [
        entry.name,
        dateTime(wireMillis(entry.created_at)),
        entry.last_used_at ? dateTime(wireMillis(entry.last_used_at)) : 'Never',
        h('div', { class: 'row-actions' }, remover),
      ],
    };
  });
  return stackedTable({
    columns: [
      { label: 'Name', className: 'cell-name' },
      { label: 'Added' },
      { label: 'Last used' },
      { label: 'Actions', className: 'cell-actions' },
    ],
    rows,
    caption,
    className: 'passkeys-table',
  });
}

export function recoveryCodesClause(left, whose, what = 'stop working') {
  if (left === 0) return '';
  return left === null || left === undefined
    ? `, and ${whose} recovery codes, if any, ${what}`
    : `, and ${whose} recovery codes ${what}`;
}

/**
 * The card. onChange(): called when the list was (re)read or changed, so that the
 * screen can update what depends on it (its status message, its facts). recoveryLeft():
 * the account's unused recovery codes (null when not known), for the remove warning.
 */
export function passkeysCard(app, { onChange = () => {}, recoveryLeft = () => null } = {}) {
  const titleId = uid('passkeys-title');
  const addButton = h('button', { type: 'button', class: 'button button-primary', text: 'Add Passkey' });
  const hostNote = h('p', { class: 'note note-warn passkey-host-note', role: 'note', hidden: true });
  const body = h('div', { class: 'table-wrap' }, h('p', { class: 'muted', text: 'Loading your passkeys…' }));
  const el = h(
    'section',
    { class: 'card passkeys-card', 'aria-labelledby': titleId },
    h(
      'div',
      { class: 'card-header' },
      h('h2', { class: 'card-title', id: titleId, tabindex: '-1', text: 'Passkeys' }),
      addButton,
    ),
    h('p', {
      class: 'muted',
      text:
        'A passkey is the second factor without a code to type: a security key, your phone, ' +
        "or your computer's fingerprint or face unlock. Logging in then takes your password " +
        'and the passkey.',
    }),
    hostNote,
    body,
  );
  let entries = null; // PasskeyEntry list, oldest first; null until read
  let error = null;
  let ticket = null;
  let destroyed = false;

  // The page's address does not change: the note is built once (a link in it keeps the
  // focus across re-reads of the list).
  const problem = passkeysBlocked();
  if (problem) append(hostNote, problemContent(problem));
  hostNote.hidden = !problem;
  addButton.hidden = Boolean(problem);
  addButton.addEventListener('click', () => add());

  async function load() {
    const mine = {};
    ticket = mine;
    let list = null;
    let failure = null;
    try {
      list = await app.rpc.call('user.webauthn_list', [app.username]);
    } catch (err) {
      failure = refusal(err);
    }
    if (destroyed || ticket !== mine) return;
    entries = failure ? entries : list;
    error = failure;
    render();
    onChange();
  }

  function focusAfterChange() {
    if (!addButton.hidden) addButton.focus();
    else el.querySelector('h2').focus();
  }

  // -- Add Passkey ----------------------------------------------------------------------------

  async function add() {
    const hadFactor = hasSecondFactor(app);
    const added = await addPasskeyDialog(app);
    if (!added || destroyed) return;
    // The other sessions and the re-login tokens of the user ended (API.md §9); a first
    // passkey made this session a two-factor one.
    if (!hadFactor) app.offerRecovery = true;
    await app.refreshMe({ renewToken: true });
    await load();
    focusAfterChange();
    app.toast(`Passkey added: ${added.name}. Your other sessions have ended.`, 'ok');
  }

  // -- Remove ---------------------------------------------------------------------------------

  async function remove(entry) {
    const secret = Boolean(app.me && app.me.two_factor_config.secret_configured);
    const last = !secret && entries && entries.length === 1;
    const value = await openDialog({
      title: `Remove ${entry.name}?`,
      body: () => [
        h('p', {
          text: `The passkey “${entry.name}” will no longer log you in to this server.`,
        }),
        h('p', { text: 'Your other sessions will end; this one stays.' }),
        last
          ? h('p', {
              class: 'note note-warn',
              role: 'note',
              text:
                'It is your only second factor: logging in will need only your password' +
                `${recoveryCodesClause(recoveryLeft(), 'your')}.`,
            })
          : null,
      ],
      actions: [
        { label: 'Cancel', kind: 'secondary', value: null },
        {
          label: 'Remove',
          kind: 'danger',
          run: async (ctx) => {
            try {
              await app.rpc.call('user.webauthn_delete', [app.username, entry.id]);
            } catch (err) {
              if (err instanceof RpcError && err.errname === 'ENOENT') return 'gone';
              ctx.setError(refusal(err));
              return undefined;
            }
            return 'removed';
          },
        },
      ],
      initialFocus: (dialog) => dialog.querySelector('.button-secondary'),
    });
    if (!value || destroyed) return;
    if (value === 'removed') await app.refreshMe({ renewToken: true });
    await load();
    focusAfterChange();
    if (value === 'removed') app.toast(`Passkey removed: ${entry.name}.`, 'ok');
    else app.toast('This passkey was removed already.', 'warn');
  }

  // -- the list -------------------------------------------------------------------------------

  function render() {
    if (error && !entries) {
      replace(body, h('p', { class: 'form-error', role: 'alert', text: error }));
      return;
    }
    if (!entries) return;
    replace(
      body,
      error ? h('p', { class: 'form-error', role: 'alert', text: error }) : null,
      passkeyTable(entries, { caption: 'Your passkeys', empty: 'You have no passkeys.', onRemove: remove }),
    );
  }

  render();
  return {
    el,
    load,
    /** Open Add Passkey from elsewhere (the setup prompt): false when it cannot be offered. */
    add() {
      if (addButton.hidden) return false;
      addButton.focus(); // scrolls the card into view; the dialog gives the focus back to it
      add();
      return true;
    },
    /** Passkeys of the account (null until the list was read). */
    count() {
      return entries ? entries.length : null;
    },
    destroy() {
      destroyed = true;
    },
  };
}
