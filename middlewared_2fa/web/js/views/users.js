// Settings > Users: the local users (user.query, API.md §5) with their roles, two-factor
// state, lock and recovery codes left, kept current by the user.query events.
//
// What each caller sees and may do follows the contract, so that no button is offered
// that the daemon would refuse:
// - Without ACCOUNT_READ, user.query answers the caller's own entry only: the screen
//   shows that row, with Change Password (user.update of the own id with `password`).
// - With ACCOUNT_WRITE: Add User, and for each user within the role guard (API.md §3:
//   every role of the user is held by the caller) Edit, Lock / Unlock, Clear 2FA
//   (user.unset_2fa_secret), One-Time Password (auth.generate_onetime_password, §10) and
//   Delete. The own row offers no Lock or Delete (that would end this very session). Roles
//   can be given only when the caller holds them, so the dialog offers only those.
// - Recovery codes left come from user.twofactor_config, which answers for the caller
//   itself or a FULL_ADMIN caller only (API.md §4, §10): one call per user with 2FA, a few
//   at a time (a connection runs 10 calls at once, API.md §1). The same answer tells
//   whether the user has a TOTP secret (`secret_configured`): Clear 2FA removes only that
//   secret, so a FULL_ADMIN is offered it only where there is one (a user whose second
//   factor is a passkey has none). Other callers cannot tell and are offered it wherever
//   2FA is configured; its dialog then says that passkeys, if any, stay. The same answer
//   names the kind in the Two-Factor column for a FULL_ADMIN: "Configured (app)" with a
//   secret, "Configured (passkey)" without (no user.webauthn_list per row). Texts about
//   recovery codes follow the count: nothing when there are none, "if any" when unknown.
// - A FULL_ADMIN also gets Passkeys on other users with 2FA (API.md §12: user.webauthn_list
//   and user.webauthn_delete answer the user themself or FULL_ADMIN): a dialog that lists
//   the user's passkeys and removes them after a confirmation. Adding one is only for the
//   user themself (the Passkeys card of their Two-Factor Authentication screen).
// The server checks everything again; its refusals (EPERM, EACCES) are put in words.

import { h, replace, uid } from '../dom.js';
import { confirmDialog, openDialog } from '../dialog.js';
import { describeError, fieldPath, sentence } from '../errors.js';
import { formField } from '../form.js';
import { holdsAll } from '../format.js';
import { RpcError } from '../rpc.js';
import { copyButton } from './parts.js';
import { passkeyTable, recoveryCodesClause } from './passkeys.js';
import { CODES_PER_SET } from './recovery.js';
import { stackedTable } from './table.js';

/** The roles of API.md §3 and what they allow, in the order the dialog lists them. */
export const ROLE_DESCRIPTIONS = {
  FULL_ADMIN: 'Everything.',
  READONLY_ADMIN: 'Read everything, change nothing.',
  ACCOUNT_READ: 'See all users.',
  ACCOUNT_WRITE: 'Add, change, lock and delete users (includes ACCOUNT_READ).',
  SYSTEM_SECURITY_READ: 'See the global two-factor settings, the clock check and alerts.',
  SYSTEM_SECURITY_WRITE: 'Change the global two-factor settings and NTP servers.',
  SYSTEM_AUDIT_READ: 'Read the audit log.',
  AUTH_SESSIONS_READ: 'See every session.',
  AUTH_SESSIONS_WRITE: 'End other users’ sessions (includes AUTH_SESSIONS_READ).',
  API_KEY_READ: 'See every API key.',
  API_KEY_WRITE: 'Make, reset and delete other users’ API keys (includes API_KEY_READ).',
};

/** Calls of user.twofactor_config in flight at once (recovery codes left). */
const COUNT_CALLS = 3;

/** A refusal of the server in words (the reasons of EPERM/EACCES are the daemon's). */
export function explain(err, username) {
  if (!(err instanceof RpcError)) return describeError(err);
  const reason = err.message || '';
  if (err.errname === 'EPERM') {
    if (/grant only roles/i.test(reason)) return 'You cannot give a role you do not hold.';
    if (/whose roles you hold/i.test(reason)) {
      return `You cannot change ${username || 'this user'}: they have roles that you do not hold.`;
    }
    if (/account changed during this call/i.test(reason)) {
      return 'Your own account changed meanwhile. Log in again.';
    }
    return sentence(reason);
  }
  if (err.errname === 'EACCES') {
    if (/two-factor authentication/i.test(reason)) {
      return (
        'This needs a session that logged in with two factors: log out, then log in again ' +
        'with a code from your authenticator app.'
      );
    }
    return 'You are not allowed to do this.';
  }
  if (err.errname === 'ENOENT') return `${username || 'This user'} no longer exists.`;
  return describeError(err);
}

/** A field's message in plain words (the schema's wording where it is too technical). */
function fieldMessage(path, message) {
  const text = String(message || '');
  if (path === 'username' && /pattern/i.test(text)) {
    return 'This is not a valid username (see the rule above).';
  }
  if (path === 'password' && /at least 1 character/i.test(text)) return 'Enter a password.';
  return sentence(text);
}

/**
 * Show a -32602 answer at its fields (`fields`: path -> {setError, input}); what has no
 * field goes to the dialog's message. Returns true when it was a validation error.
 */
function showFieldErrors(err, fields, ctx) {
  if (!(err instanceof RpcError) || err.code !== -32602 || !err.extra.length) return false;
  const unplaced = [];
  let first = null;
  for (const [attribute, message] of err.extra) {
    const path = fieldPath(attribute).split('.')[0];
    const field = fields[path];
    if (field) {
      field.setError(fieldMessage(path, message));
      first = first || field.input;
    } else {
      unplaced.push(`${fieldPath(attribute) || 'Request'}: ${message}`);
    }
  }
  ctx.setError(unplaced.length ? sentence(unplaced.join('; ')) : null);
  if (first) first.focus();
  return true;
}

function onetimeStep(app, user) {
  return {
    title: `One-Time Password for ${user.username}`,
    wide: true,
    body: () => [
      h('p', {
        text:
          `A one-time password lets ${user.username} log in once without the authenticator ` +
          'app, for example after losing their phone. It is valid for 24 hours and for one ' +
          `login, in which ${user.username} must choose a new password and set up a new ` +
          'authenticator before doing anything else.',
      }),
      h('p', {
        class: 'muted',
        text:
          `Until then the current password and authenticator of ${user.username} keep ` +
          'working. A one-time password made earlier for this user and not used yet stops working.',
      }),
    ],
    actions: [
      { label: 'Cancel', kind: 'secondary', value: null },
      {
        label: 'Generate',
        kind: 'primary',
        run: async (ctx) => {
          let password;
          try {
            password = await app.rpc.call('auth.generate_onetime_password', [{ username: user.username }]);
          } catch (err) {
            if (err instanceof RpcError && err.code === -32602 && err.extra.length) {
              // On auth.generate_onetime_password.username: unknown or locked user.
              ctx.setError(sentence(err.extra.map(([, text]) => text).join('; ')));
              return undefined;
            }
            ctx.setError(explain(err, user.username));
            return undefined;
          }
          ctx.render(shownStep(user, password));
          return undefined;
        },
      },
    ],
    initialFocus: (dialog) => dialog.querySelector('.button-secondary'),
  };
}

function shownStep(user, password) {
  return {
    title: `One-Time Password for ${user.username}`,
    body: () => {
      const id = uid('otpw');
      const text = h('code', { class: 'secret onetime-password', id, text: password });
      const status = h('span', { class: 'copy-status', role: 'status' });
      const copy = copyButton({ text: password, target: text, status, what: 'the password is' });
      copy.setAttribute('aria-describedby', id);
      return [
        h(
          'p',
          { class: 'note note-warn', role: 'note' },
          h('strong', { text: 'It is shown only once. ' }),
          `Give it to ${user.username} in person or through another safe channel.`,
        ),
        h('div', { class: 'secret-row' }, text, copy),
        status,
        h('p', {
          text:
            `It works for one login within the next 24 hours: ${user.username} types it as ` +
            'the password, then chooses a new password and sets up the authenticator app again.',
        }),
      ];
    },
    actions: [{ label: 'Done', kind: 'primary', value: 'done' }],
  };
}

/** The roles fieldset: a checkbox per role the caller may give. {el, value(), setError}. */
function rolesField(app, current) {
  const known = Object.keys(ROLE_DESCRIPTIONS);
  const names = [...known, ...current.filter((role) => !known.includes(role))];
  const offered = names.filter((role) => current.includes(role) || holdsAll(app.roles, [role]));
  const boxes = offered.map((role) => {
    const id = uid('role');
    const box = h('input', { type: 'checkbox', id, value: role, checked: current.includes(role) });
    const helpId = `${id}-help`;
    box.setAttribute('aria-describedby', helpId);
    return {
      box,
      el: h(
        'div',
        { class: 'role-option' },
        h('div', { class: 'check-row' }, box, h('label', { class: 'check-label', for: id, text: role })),
        h('p', { class: 'field-help', id: helpId, text: ROLE_DESCRIPTIONS[role] || 'A role of a plugin.' }),
      ),
    };
  });
  const error = h('p', { class: 'field-error', role: 'alert', hidden: true });
  const el = h(
    'fieldset',
    { class: 'fieldset roles-fieldset' },
    h('legend', { text: 'Roles' }),
    h('p', {
      class: 'field-help',
      text:
        offered.length < names.length
          ? 'No role: the user manages only their own two-factor settings, sessions and API keys. ' +
            'You can give only roles that you hold yourself.'
          : 'No role: the user manages only their own two-factor settings, sessions and API keys.',
    }),
    h('div', { class: 'role-options' }, boxes.map((b) => b.el)),
    error,
  );
  return {
    el,
    input: boxes.length ? boxes[0].box : el,
    value: () => boxes.filter((b) => b.box.checked).map((b) => b.box.value),
    setError(text) {
      error.textContent = text || '';
      error.hidden = !text;
      el.classList.toggle('field-invalid', Boolean(text));
    },
  };
}

/** Add User (user null) or Edit (user.create / user.update, API.md §5). */
function userFormStep(app, user, onSaved) {
  const editing = Boolean(user);
  const builtin = editing && user.builtin;
  const username = h('input', {
    type: 'text',
    name: 'username',
    autocomplete: 'off',
    spellcheck: 'false',
    autocapitalize: 'none',
    maxlength: 32,
    readonly: builtin,
  });
  const fullName = h('input', { type: 'text', name: 'full_name', autocomplete: 'off', maxlength: 256 });
  const password = h('input', { type: 'password', name: 'password', autocomplete: 'new-password' });
  const again = h('input', { type: 'password', name: 'password_again', autocomplete: 'new-password' });
  const ssh = h('input', { type: 'checkbox', name: 'ssh_password_enabled' });
  username.value = editing ? user.username : '';
  fullName.value = editing ? user.full_name || '' : '';
  ssh.checked = editing && user.ssh_password_enabled;
  const fields = {
    username: formField({
      label: 'Username',
      input: username,
      help: builtin
        ? 'The built-in administrator cannot be renamed.'
        : 'Up to 32 letters, digits, “.”, “_” or “-”, starting with a letter or “_”.',
    }),
    full_name: formField({ label: 'Full Name', input: fullName }),
    password: formField({
      label: editing ? 'New Password' : 'Password',
      input: password,
      help: editing
        ? 'Leave it empty to keep the current password. A new password ends the other sessions of the user.'
        : null,
    }),
    password_again: formField({ label: editing ? 'Confirm New Password' : 'Confirm Password', input: again }),
    ssh_password_enabled: formField({
      label: 'Allow SSH Login With a Password',
      input: ssh,
      inline: true,
      help: 'While two-factor authentication is required for SSH, this needs a 2FA secret first.',
    }),
  };
  const roles = builtin ? null : rolesField(app, editing ? user.roles : []);
  if (roles) fields.roles = roles;

  function clearErrors(ctx) {
    for (const field of Object.values(fields)) field.setError(null);
    ctx.setError(null);
  }

  return {
    title: editing ? `Edit ${user.username}` : 'Add User',
    wide: true,
    body: () =>
      h(
        'div',
        { class: 'form' },
        fields.username.el,
        fields.full_name.el,
        fields.password.el,
        fields.password_again.el,
        roles
          ? roles.el
          : h('p', { class: 'muted', text: 'The built-in administrator always keeps FULL_ADMIN.' }),
        fields.ssh_password_enabled.el,
        editing
          ? h('p', {
              class: 'muted',
              text: `Changing the roles of ${user.username} ends all of their sessions.`,
            })
          : null,
      ),
    actions: [
      { label: 'Cancel', kind: 'secondary', value: null },
      {
        label: editing ? 'Save' : 'Add User',
        kind: 'primary',
        run: async (ctx) => {
          clearErrors(ctx);
          if (password.value !== again.value) {
            fields.password_again.setError('The two passwords are not the same.');
            again.focus();
            return undefined;
          }
          let entry;
          try {
            if (editing) {
              const changes = {};
              if (!builtin && username.value !== user.username) changes.username = username.value;
              if (fullName.value !== (user.full_name || '')) changes.full_name = fullName.value;
              if (password.value) changes.password = password.value;
              if (roles) {
                const chosen = roles.value();
                const same = chosen.length === user.roles.length && chosen.every((r) => user.roles.includes(r));
                if (!same) changes.roles = chosen;
              }
              if (ssh.checked !== Boolean(user.ssh_password_enabled)) changes.ssh_password_enabled = ssh.checked;
              if (!Object.keys(changes).length) return 'unchanged';
              entry = await app.rpc.call('user.update', [user.id, changes]);
            } else {
              entry = await app.rpc.call('user.create', [
                {
                  username: username.value,
                  full_name: fullName.value,
                  password: password.value,
                  roles: roles.value(),
                  ssh_password_enabled: ssh.checked,
                },
              ]);
            }
          } catch (err) {
            if (!showFieldErrors(err, fields, ctx)) ctx.setError(explain(err, editing ? user.username : username.value));
            return undefined;
          }
          onSaved(entry);
          return 'saved';
        },
      },
    ],
  };
}

/** Change Password of the caller's own account (user.update with `password` only). */
function passwordStep(app, user) {
  const password = h('input', { type: 'password', name: 'password', autocomplete: 'new-password' });
  const again = h('input', { type: 'password', name: 'password_again', autocomplete: 'new-password' });
  const fields = {
    password: formField({
      label: 'New Password',
      input: password,
      help: 'Your other sessions end; this one stays logged in.',
    }),
    password_again: formField({ label: 'Confirm New Password', input: again }),
  };
  return {
    title: 'Change Your Password',
    body: () => h('div', { class: 'form' }, fields.password.el, fields.password_again.el),
    actions: [
      { label: 'Cancel', kind: 'secondary', value: null },
      {
        label: 'Save Password',
        kind: 'primary',
        run: async (ctx) => {
          fields.password.setError(null);
          fields.password_again.setError(null);
          if (!password.value) {
            fields.password.setError('Enter a password.');
            password.focus();
            return undefined;
          }
          if (password.value !== again.value) {
            fields.password_again.setError('The two passwords are not the same.');
            again.focus();
            return undefined;
          }
          try {
            await app.rpc.call('user.update', [user.id, { password: password.value }]);
          } catch (err) {
            if (!showFieldErrors(err, fields, ctx)) ctx.setError(explain(err, user.username));
            return undefined;
          }
          // A new password ends every re-login token of the user (API.md §9): make a new one.
          await app.refreshMe({ renewToken: true });
          return 'saved';
        },
      },
    ],
  };
}

/** A refusal of user.webauthn_list / user.webauthn_delete in words (API.md §12). */
function passkeyRefusal(err, username) {
  if (err instanceof RpcError && err.code === -32602 && err.extra.length) {
    // On user_webauthn_delete.id: the last second factor while `enforce` is on.
    const text = sentence(err.extra.map(([, message]) => message).join('; '));
    return /last second factor/i.test(text)
      ? `${text} To stop ${username} from logging in meanwhile, lock the account instead.`
      : text;
  }
  if (err instanceof RpcError && err.errname === 'EPERM' && !/whose roles|account changed/i.test(err.message)) {
    return `Only a full administrator (FULL_ADMIN) or ${username} can see and remove the passkeys of ${username}.`;
  }
  return explain(err, username);
}

/** "a passkey (Laptop)" / "2 passkeys (Laptop, YubiKey)". */
function passkeyWords(entries) {
  const names = entries.map((entry) => `“${entry.name}”`).join(', ');
  return entries.length === 1 ? `a passkey (${names})` : `${entries.length} passkeys (${names})`;
}

/**
 * The Passkeys dialog of another user (FULL_ADMIN, API.md §12): their passkeys by name,
 * when each was added and last used, and Remove, which asks first in the same dialog
 * (Cancel or Escape go back to the list). secretConfigured(): whether the user has a TOTP
 * secret (true, false, or undefined/null when not known), and recoveryLeft() their unused
 * recovery codes (a number, or undefined/null when not known), for the last-factor warning.
 * onChange(): after each removal (the Users table reads the user again). Resolves when the
 * dialog is closed.
 */
async function userPasskeysDialog(
  app,
  user,
  { secretConfigured = () => null, recoveryLeft = () => null, onChange = () => {} } = {},
) {
  const name = user.username;
  const list = h('div', { class: 'table-wrap' }, h('p', { class: 'muted', text: `Loading the passkeys of ${name}…` }));
  const status = h('p', { class: 'muted passkeys-status', role: 'status' });
  let entries = null;
  let failure = null;
  let dialogCtx = null;

  async function load() {
    try {
      entries = await app.rpc.call('user.webauthn_list', [name]);
      failure = null;
    } catch (err) {
      failure = passkeyRefusal(err, name);
    }
    render();
  }

  function render() {
    const alert = failure ? h('p', { class: 'form-error', role: 'alert', text: failure }) : null;
    if (!entries) {
      if (alert) replace(list, alert);
      return;
    }
    replace(
      list,
      alert,
      passkeyTable(entries, {
        caption: `Passkeys of ${name}`,
        empty: 'No passkeys.',
        onRemove: (entry) => {
          if (dialogCtx) dialogCtx.render(confirmStep(entry));
        },
      }),
    );
  }

  /** The list; `focusId`: the passkey whose Remove gets the focus (else the first, or Close). */
  function listStep(focusId) {
    return {
      title: `Passkeys of ${name}`,
      body: (ctx) => {
        dialogCtx = ctx;
        status.textContent = '';
        return [
          h('p', {
            text:
              `The passkeys that ${name} logs in with as a second factor. Only ${name} can add ` +
              'one, on their own Two-Factor Authentication screen.',
          }),
          list,
          status,
        ];
      },
      actions: [{ label: 'Close', kind: 'secondary', value: null }],
      initialFocus:
        focusId === undefined
          ? null
          : (dialog) =>
              dialog.querySelector(`.passkeys-table button[data-passkey-id="${focusId}"]`) ||
              dialog.querySelector('.passkeys-table button[data-passkey-id]') ||
              dialog.querySelector('.dialog-actions button'),
    };
  }

  function confirmStep(entry) {
    const last = secretConfigured() === false && entries && entries.length === 1;
    const back = (ctx) => {
      ctx.render(listStep(entry.id));
      return false;
    };
    return {
      title: `Remove ${entry.name}?`,
      body: () => [
        h('p', { text: `The passkey “${entry.name}” will no longer log ${name} in.` }),
        h('p', {
          text: `All sessions of ${name} end now: they must log in again. Their API keys keep working.`,
        }),
        last
          ? h('p', {
              class: 'note note-warn',
              role: 'note',
              text:
                `It is the last second factor of ${name}: logging in will need only the ` +
                `password${recoveryCodesClause(recoveryLeft(), 'their')}.`,
            })
          : null,
      ],
      actions: [
        {
          label: 'Cancel',
          kind: 'secondary',
          run: (ctx) => {
            back(ctx);
            return undefined;
          },
        },
        {
          label: 'Remove',
          kind: 'danger',
          run: async (ctx) => {
            let gone = false;
            try {
              await app.rpc.call('user.webauthn_delete', [name, entry.id]);
            } catch (err) {
              if (!(err instanceof RpcError && err.errname === 'ENOENT')) {
                ctx.setError(passkeyRefusal(err, name));
                return undefined;
              }
              gone = true; // removed meanwhile (or the user is gone: the list says so)
            }
            const index = entries.findIndex((e) => e.id === entry.id);
            const next = entries[index + 1] || entries[index - 1] || null;
            await load();
            onChange();
            ctx.render(listStep(next ? next.id : null));
            // Set after the list is back, so that the status region announces it.
            status.textContent = gone
              ? `The passkey “${entry.name}” was removed already.`
              : `Passkey “${entry.name}” removed. The sessions of ${name} have ended.`;
            return undefined;
          },
        },
      ],
      onCancel: back,
      initialFocus: (dialog) => dialog.querySelector('.dialog-actions .button-secondary'),
    };
  }

  const closed = openDialog({ ...listStep(), wide: true });
  load();
  await closed;
}

export function usersView(app) {
  const titleId = uid('users-title');
  const title = h('h2', { class: 'card-title', id: titleId });
  const addButton = h('button', { type: 'button', class: 'button button-primary', text: 'Add User' });
  const filter = h('input', {
    type: 'search',
    name: 'filter',
    autocomplete: 'off',
    spellcheck: 'false',
    placeholder: 'Username or full name',
  });
  const filterField = formField({ label: 'Filter Users', input: filter });
  const count = h('p', { class: 'muted table-count', role: 'status' });
  const note = h('p', { class: 'muted', hidden: true });
  const filterRow = h('div', { class: 'filter-row' }, filterField.el, count);
  const body = h('div', { class: 'table-wrap' }, h('p', { class: 'muted', text: 'Loading the users…' }));
  const el = h(
    'div',
    { class: 'page' },
    h('div', { class: 'page-header' }, h('h1', { text: 'Users' })),
    h(
      'section',
      { class: 'card', 'aria-labelledby': titleId },
      h('div', { class: 'card-header' }, title, addButton),
      filterRow,
      body,
      note,
    ),
  );
  /** id -> UserEntry */
  const users = new Map();
  /** username -> unused recovery codes (a number), or null when it cannot be read */
  const counts = new Map();
  /** username -> whether the user has a TOTP secret, or null when it cannot be read (same call) */
  const secrets = new Map();
  let loaded = false;
  let loading = null;
  let staleWhileLoading = false;
  let shownRoles = null;
  let destroyed = false;

  const isSelf = (user) => app.me && user.id === app.me.id;
  const canChange = (user) => app.canWriteAccounts && (isSelf(user) || holdsAll(app.roles, user.roles));
  /** user.twofactor_config answers for the caller itself or FULL_ADMIN (API.md §4). */
  const showsCounts = () => app.isFullAdmin || !app.canReadAccounts;
  const mayCount = (user) => user.twofactor_auth_configured && (isSelf(user) || app.isFullAdmin);
  /**
   * Clear 2FA removes the TOTP secret only: where user.twofactor_config tells (FULL_ADMIN),
   * it is offered once the answer says there is a secret (or could not be read); else
   * wherever 2FA is configured.
   */
  const offersClear = (user) => {
    if (!user.twofactor_auth_configured || isSelf(user) || !canChange(user)) return false;
    if (!showsCounts() || !mayCount(user)) return true;
    return secrets.has(user.username) && secrets.get(user.username) !== false;
  };
  /** user.webauthn_list / _delete answer the user themself or FULL_ADMIN (API.md §12). */
  const offersPasskeys = (user) => app.isFullAdmin && user.twofactor_auth_configured && !isSelf(user);

  addButton.addEventListener('click', () => {
    openDialog(userFormStep(app, null, (entry) => {
      setUser(entry);
      app.toast(`User ${entry.username} added.`, 'ok');
    }));
  });
  filter.addEventListener('input', () => render());

  async function load() {
    const ticket = {};
    loading = ticket;
    staleWhileLoading = false;
    try {
      const list = await app.rpc.call('user.query');
      if (destroyed || loading !== ticket) return;
      loading = null;
      users.clear();
      for (const user of list) users.set(user.id, user);
      loaded = true;
      render();
      loadCounts([...users.values()]);
      if (staleWhileLoading) load();
    } catch (err) {
      if (destroyed || loading !== ticket) return;
      loading = null;
      replace(body, h('p', { class: 'form-error', role: 'alert', text: describeError(err) }));
    }
  }

  /** Recovery codes left of `list`, COUNT_CALLS at a time. */
  async function loadCounts(list) {
    if (!showsCounts()) return;
    const todo = list.filter((user) => {
      if (mayCount(user)) return true;
      counts.delete(user.username);
      secrets.delete(user.username);
      return false;
    });
    const worker = async () => {
      while (todo.length && !destroyed) {
        const user = todo.shift();
        const offered = offersClear(users.get(user.id) || user);
        try {
          const config = await app.rpc.call('user.twofactor_config', [user.username]);
          counts.set(user.username, Number(config.recovery_codes_remaining));
          secrets.set(user.username, Boolean(config.secret_configured));
        } catch (err) {
          counts.set(user.username, null); // e.g. EACCES: this session used one factor
          secrets.set(user.username, null);
        }
        if (destroyed) continue;
        renderCount(user);
        const current = users.get(user.id);
        if (current && offersClear(current) !== offered) renderActions(current);
      }
    };
    await Promise.all(Array.from({ length: COUNT_CALLS }, worker));
  }

  /**
   * Put `entry` in the table. recount: read user.twofactor_config again even when the
   * entry's 2FA flag did not change (a change event: a secret may have been added or
   * removed beside a passkey, which the UserEntry does not show).
   */
  function setUser(entry, { recount = false } = {}) {
    if (!entry || !loaded) return;
    const old = users.get(entry.id);
    users.set(entry.id, entry);
    if (old && old.username !== entry.username) {
      counts.delete(old.username);
      secrets.delete(old.username);
    }
    render();
    if (
      !old ||
      recount ||
      old.twofactor_auth_configured !== entry.twofactor_auth_configured ||
      old.username !== entry.username
    ) {
      loadCounts([entry]);
    }
  }

  function removeUser(id) {
    const old = users.get(id);
    if (!old) return;
    users.delete(id);
    counts.delete(old.username);
    secrets.delete(old.username);
    render();
  }

  /** Read user `id` again (after a change of its second factors made here). */
  async function refreshUser(id) {
    try {
      const [entry] = await app.rpc.call('user.query', [[['id', '=', id]]]);
      if (entry) setUser(entry, { recount: true });
      else removeUser(id);
    } catch (err) {
      // The user.query event brings the change too.
    }
  }

  function countText(user) {
    if (!user.twofactor_auth_configured) return '—';
    if (!counts.has(user.username)) return mayCount(user) ? '…' : '—';
    const value = counts.get(user.username);
    return value === null ? 'Not available' : `${value} of ${CODES_PER_SET} left`;
  }

  /**
   * The Two-Factor column. Where user.twofactor_config tells (FULL_ADMIN, or the own row),
   * which kind: with a TOTP secret "(app)", else the second factor is a passkey, so that
   * the way to remove it is plain (Clear 2FA, or Passkeys). The UserEntry alone does not
   * tell, and a passkey count would take a call per row: other viewers see "Configured".
   */
  function twoFactorText(user) {
    if (!user.twofactor_auth_configured) return 'Not configured';
    if (!app.isFullAdmin || !secrets.has(user.username)) return 'Configured';
    const secret = secrets.get(user.username);
    if (secret === null) return 'Configured';
    return secret ? 'Configured (app)' : 'Configured (passkey)';
  }

  /** Update the cells that user.twofactor_config answers for (the row stays). */
  function renderCount(user) {
    const row = body.querySelector(`tr[data-user-id="${user.id}"]`);
    if (!row) return;
    for (const [selector, text] of [
      ['.recovery-cell', countText(user)],
      ['.twofactor-cell', twoFactorText(user)],
    ]) {
      const cell = row.querySelector(selector);
      if (cell) replace(cell, h('div', { class: 'cell-value', text }));
    }
  }

  /** Re-draw the actions of `user`'s row only (the keyboard focus stays on the same action). */
  function renderActions(user) {
    const cell = body.querySelector(`tr[data-user-id="${user.id}"] td.cell-actions`);
    if (!cell) return;
    const active = document.activeElement;
    const kept = active && cell.contains(active) ? active.dataset.action : null;
    const actions = actionsOf(user);
    replace(cell, actions.length ? h('div', { class: 'cell-value' }, h('div', { class: 'row-actions' }, actions)) : null);
    if (kept) focusRow(user.username, kept);
  }

  function actionButton(user, action, text, label, kind, run) {
    const button = h('button', {
      type: 'button',
      class: `button ${kind} button-small`,
      text,
      'aria-label': label,
      dataset: { action, username: user.username },
    });
    button.addEventListener('click', async () => {
      await run();
      // The dialog gives focus back to this button; when a change re-drew the table
      // meanwhile, the button is gone: focus the same row's new one instead.
      const active = document.activeElement;
      if (document.querySelector('dialog[open]')) return;
      if (!active || active === document.body || !active.isConnected) focusRow(user.username, action);
    });
    return button;
  }

  function actionsOf(user) {
    const self = isSelf(user);
    const name = user.username;
    const buttons = [];
    if (canChange(user)) {
      buttons.push(
        actionButton(user, 'edit', 'Edit', `Edit ${name}`, 'button-secondary', () =>
          openDialog(userFormStep(app, user, (entry) => {
            setUser(entry);
            app.toast(`Changes to ${entry.username} saved.`, 'ok');
          })),
        ),
      );
      if (!self) {
        buttons.push(
          user.locked
            ? actionButton(user, 'unlock', 'Unlock', `Unlock ${name}`, 'button-secondary', () => setLocked(user, false))
            : actionButton(user, 'lock', 'Lock', `Lock ${name}`, 'button-secondary', () => setLocked(user, true)),
        );
      }
      if (offersClear(user)) {
        buttons.push(
          actionButton(user, 'clear-2fa', 'Clear 2FA', `Clear 2FA for ${name}`, 'button-secondary', () => clear2fa(user)),
        );
      }
      if (offersPasskeys(user)) {
        buttons.push(
          actionButton(user, 'passkeys', 'Passkeys', `Passkeys of ${name}`, 'button-secondary', () =>
            userPasskeysDialog(app, user, {
              secretConfigured: () => secrets.get(name),
              recoveryLeft: () => counts.get(name),
              onChange: () => refreshUser(user.id),
            }),
          ),
        );
      }
      if (!user.locked && !self) {
        buttons.push(
          actionButton(user, 'onetime', 'One-Time Password', `One-Time Password for ${name}`, 'button-secondary', () =>
            openDialog(onetimeStep(app, user)),
          ),
        );
      }
      if (!self && !user.builtin) {
        buttons.push(
          actionButton(user, 'delete', 'Delete', `Delete ${name}`, 'button-danger-outline', () => deleteUser(user)),
        );
      }
    } else if (self) {
      buttons.push(
        actionButton(user, 'password', 'Change Password', 'Change Password', 'button-secondary', () =>
          openDialog(passwordStep(app, user)).then((value) => {
            if (value === 'saved') app.toast('Your new password is saved.', 'ok');
          }),
        ),
      );
    }
    return buttons;
  }

  async function setLocked(user, locked) {
    if (locked) {
      const sure = await confirmDialog({
        title: `Lock ${user.username}?`,
        paragraphs: [
          `${user.username} can no longer log in, with a password or an API key, until the account is unlocked. ` +
            'All of their sessions end now.',
        ],
        confirmLabel: 'Lock',
        danger: true,
      });
      if (!sure) return;
    }
    try {
      setUser(await app.rpc.call('user.update', [user.id, { locked }]));
      app.toast(locked ? `${user.username} is locked.` : `${user.username} is unlocked and may log in again.`, 'ok');
    } catch (err) {
      app.toast(explain(err, user.username), 'bad');
    }
  }

  /**
   * Clear 2FA: user.unset_2fa_secret removes the TOTP secret only (API.md §4); passkeys
   * stay (API.md §12). A FULL_ADMIN's dialog reads the user's passkeys when it opens and
   * says which stay; other callers cannot read them, and the dialog says so.
   */
  async function clear2fa(user) {
    const name = user.username;
    // Unused recovery codes (FULL_ADMIN: user.twofactor_config; else not known: null).
    const codes = counts.has(name) ? counts.get(name) : null;
    const globalOn = Boolean(app.me && app.me.two_factor_config.global_enabled);
    const weaker = () =>
      'logging in then needs only the password, which reduces the security of the account' +
      `${recoveryCodesClause(codes, 'their')}.`;
    const passkeyNote = h('p', { role: 'status' });
    // What happens at the next login when no second factor is left (shown while that may be so).
    const nextLogin = globalOn
      ? h('p', {
          class: 'muted',
          text:
            'Two-factor authentication is enabled globally: when no second factor is left, ' +
            `${name} is asked to set one up at their next login.`,
        })
      : null;
    let kept = null; // the passkeys that stay, when read
    if (app.isFullAdmin) {
      passkeyNote.textContent = `Looking for passkeys of ${name}…`;
      app.rpc.call('user.webauthn_list', [name]).then(
        (entries) => {
          kept = entries;
          passkeyNote.textContent = entries.length
            ? `${name} keeps ${passkeyWords(entries)}: logging in still needs the password and a ` +
              `passkey${recoveryCodesClause(codes, 'their', 'keep working')}. To remove ` +
              `passkeys, use Passkeys in the row of ${name}.`
            : `${name} has no passkeys: ${weaker()}`;
          if (nextLogin) {
            nextLogin.hidden = entries.length > 0;
            nextLogin.textContent =
              `Two-factor authentication is enabled globally, so ${name} is asked to set up a ` +
              'second factor at their next login.';
          }
        },
        (err) => {
          passkeyNote.textContent =
            `The passkeys of ${name} cannot be read: ${passkeyRefusal(err, name)} Passkeys, if any, stay.`;
        },
      );
    } else {
      passkeyNote.textContent =
        'Passkeys, if any, stay; only a full administrator or the user can remove them. ' +
        `Without a passkey, ${weaker()}`;
    }
    const value = await openDialog({
      title: `Clear 2FA for ${name}?`,
      body: () => [
        h('p', {
          text:
            `This removes the TOTP secret of ${name}: the codes of their authenticator app no ` +
            'longer log them in. All of their sessions end; their API keys keep working.',
        }),
        passkeyNote,
        nextLogin,
      ],
      actions: [
        { label: 'Cancel', kind: 'secondary', value: null },
        {
          label: 'Clear 2FA',
          kind: 'danger',
          run: async (ctx) => {
            try {
              await app.rpc.call('user.unset_2fa_secret', [name]);
            } catch (err) {
              ctx.setError(explain(err, name));
              return undefined;
            }
            return 'cleared';
          },
        },
      ],
      initialFocus: (dialog) => dialog.querySelector('.button-secondary'),
    });
    if (value === 'cleared') {
      app.toast(
        kept && kept.length
          ? `The TOTP secret of ${name} is removed; their passkeys stay.`
          : `The TOTP secret of ${name} is removed.`,
        'ok',
      );
      await refreshUser(user.id);
    }
  }

  async function deleteUser(user) {
    const value = await openDialog({
      title: `Delete ${user.username}?`,
      body: () => [
        h('p', {
          text:
            `The account ${user.username} is deleted with its two-factor secret, recovery codes ` +
            'and API keys. All of its sessions end. This cannot be undone.',
        }),
      ],
      actions: [
        { label: 'Cancel', kind: 'secondary', value: null },
        {
          label: 'Delete',
          kind: 'danger',
          run: async (ctx) => {
            try {
              await app.rpc.call('user.delete', [user.id]);
            } catch (err) {
              ctx.setError(explain(err, user.username));
              return undefined;
            }
            return 'deleted';
          },
        },
      ],
      initialFocus: (dialog) => dialog.querySelector('.button-secondary'),
    });
    if (value === 'deleted') {
      removeUser(user.id);
      app.toast(`${user.username} is deleted.`, 'ok');
    }
  }

  /** Focus the button `action` of `username`'s row (or its counterpart, or the row's first). */
  function focusRow(username, action) {
    // After Clear 2FA of a user who keeps passkeys, the Passkeys action is the next step.
    const counterpart = { lock: 'unlock', unlock: 'lock', 'clear-2fa': 'passkeys' }[action];
    const rowButtons = [...body.querySelectorAll('button[data-action]')].filter((b) => b.dataset.username === username);
    const target =
      rowButtons.find((b) => b.dataset.action === action) ||
      rowButtons.find((b) => b.dataset.action === counterpart) ||
      rowButtons[0] ||
      (app.canWriteAccounts ? addButton : filter);
    if (target && target.isConnected) target.focus();
  }

  function matches(user, text) {
    if (!text) return true;
    const needle = text.toLocaleLowerCase();
    return (
      user.username.toLocaleLowerCase().includes(needle) || (user.full_name || '').toLocaleLowerCase().includes(needle)
    );
  }

  function render() {
    const reader = app.canReadAccounts;
    shownRoles = JSON.stringify(app.roles);
    title.textContent = reader ? 'Local Users' : 'Your Account';
    addButton.hidden = !app.canWriteAccounts;
    filterRow.hidden = !reader;
    if (!loaded) return;
    const withCounts = showsCounts();
    note.hidden = withCounts;
    note.textContent = withCounts
      ? ''
      : 'Recovery codes left are shown to full administrators (FULL_ADMIN) only.';
    const all = [...users.values()].sort((a, b) => a.username.localeCompare(b.username));
    const text = reader ? filter.value.trim() : '';
    const shown = all.filter((user) => matches(user, text));
    count.textContent = text ? `${shown.length} of ${all.length} users` : `${all.length} ${all.length === 1 ? 'user' : 'users'}`;
    // A re-draw keeps the keyboard focus on the same row's button.
    const active = document.activeElement;
    const kept = active && body.contains(active) && active.dataset.action ? { ...active.dataset } : null;
    const columns = [
      { label: 'Username', className: 'cell-name' },
      { label: 'Full Name' },
      { label: 'Roles', className: 'cell-roles' },
      { label: 'Two-Factor', className: 'twofactor-cell' },
      withCounts ? { label: 'Recovery Codes', className: 'recovery-cell' } : null,
      { label: 'Status' },
      { label: 'Actions', className: 'cell-actions' },
    ].filter(Boolean);
    const rows = shown.map((user) => {
      const actions = actionsOf(user);
      return {
        attrs: { dataset: { username: user.username, userId: String(user.id) } },
        cells: [
          user.username,
          user.full_name || '—',
          user.roles.length ? user.roles.join(', ') : 'None',
          twoFactorText(user),
          withCounts ? countText(user) : null,
          h('span', { class: user.locked ? 'badge badge-bad' : 'badge badge-ok', text: user.locked ? 'Locked' : 'Active' }),
          actions.length ? h('div', { class: 'row-actions' }, actions) : null,
        ].filter((cell, index) => withCounts || index !== 4),
      };
    });
    replace(
      body,
      shown.length
        ? stackedTable({ columns, rows, caption: reader ? 'Local users' : 'Your account', className: 'users-table' })
        : h('p', { class: 'muted', text: text ? `No user matches “${text}”.` : 'There are no users.' }),
    );
    if (kept) focusRow(kept.username, kept.action);
  }

  render();
  return {
    el,
    update() {
      // Shared data changes often (clock, alerts); only the roles change this table.
      if (shownRoles !== JSON.stringify(app.roles)) {
        render();
        loadCounts([...users.values()]);
      }
    },
    mounted: load,
    onCollectionUpdate({ collection, msg, id, fields }) {
      if (collection !== 'user.query') return;
      if (!loaded || loading) {
        staleWhileLoading = true;
        return;
      }
      if (msg === 'removed') removeUser(id);
      else if (fields) setUser(fields, { recount: true });
    },
    destroy() {
      destroyed = true;
    },
  };
}
