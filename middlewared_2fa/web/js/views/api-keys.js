// Settings > API Keys (API.md §11): keys for scripts and automation, which log in as their
// user with API_KEY_PLAIN or SCRAM and need no password and no code.
//
// Everyone sees and manages their own keys (api_key.query answers only those without
// API_KEY_READ); API_KEY_READ sees every key, API_KEY_WRITE also makes, resets and deletes
// other users' keys within the role guard (API.md §3). The key itself is shown once, when
// it is made (api_key.create) or reset (api_key.update {reset: true}): the daemon keeps
// only SCRAM data and cannot show it again. Deleting a key ends its sessions; there is no
// separate "revoke" call: the daemon revokes a key by itself when it is sent in the clear
// over a network (revoked_reason says so), and a reset makes a revoked key work again.
//
// The contract has no events for API keys: the list is read when the screen opens, after
// each change made here, on user.query events (a user renamed or deleted) and when the
// browser tab becomes visible again.

import { h, replace, uid } from '../dom.js';
import { openDialog } from '../dialog.js';
import { describeError, fieldPath, sentence } from '../errors.js';
import { formField } from '../form.js';
import { dateTime, holdsAll, wireMillis } from '../format.js';
import { RpcError } from '../rpc.js';
import { copyButton } from './parts.js';
import { stackedTable } from './table.js';

/** The `value` of a datetime-local input for `millis` (local time, minutes). */
function localInputValue(millis) {
  const d = new Date(millis);
  const pad = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

/** {label, tone, detail} of a key now. */
function keyState(key) {
  if (key.revoked) {
    return { label: 'Revoked', tone: 'bad', detail: key.revoked_reason ? sentence(key.revoked_reason) : null };
  }
  if (key.expires_at && wireMillis(key.expires_at) <= Date.now()) {
    return { label: 'Expired', tone: 'warn', detail: null };
  }
  return { label: 'Active', tone: 'ok', detail: null };
}

/** A refusal of the server in words. */
function explain(err) {
  if (!(err instanceof RpcError)) return describeError(err);
  const reason = err.message || '';
  if (err.errname === 'EPERM') {
    if (/whose roles you hold/i.test(reason)) return 'You cannot manage the keys of a user who has roles that you do not hold.';
    return sentence(reason);
  }
  if (err.errname === 'EACCES') {
    if (/two-factor/i.test(reason)) return sentence(reason);
    return 'You are not allowed to do this.';
  }
  if (err.errname === 'ENOENT') return 'This API key no longer exists.';
  return describeError(err);
}

/** The dialog step that shows a new key once. */
function shownKeyStep(entry, { reset }) {
  return {
    title: reset ? `New Key for ${entry.name}` : 'API Key Created',
    wide: true,
    body: () => {
      const id = uid('api-key');
      const text = h('code', { class: 'secret api-key-value', id, text: entry.key });
      const status = h('span', { class: 'copy-status', role: 'status' });
      const copy = copyButton({ text: entry.key, target: text, status, what: 'the key is' });
      copy.setAttribute('aria-describedby', id);
      return [
        h(
          'p',
          { class: 'note note-warn', role: 'note' },
          h('strong', { text: 'Copy the key now: it will not be shown again. ' }),
          'The server keeps only data to check it, not the key. Store it like a password.',
        ),
        h('p', { class: 'secret-label', text: `Key “${entry.name}” of ${entry.username}` }),
        h('div', { class: 'secret-row' }, text, copy),
        status,
        reset ? h('p', { text: 'The previous key no longer works, and its sessions have ended.' }) : null,
        h(
          'p',
          { class: 'muted' },
          'It logs in as ',
          h('strong', { text: entry.username }),
          ' without a password or a code, for example ',
          h('code', { text: `midclt2fa -U ${entry.username} -K FILE` }),
          ' with the key saved in FILE.',
        ),
      ];
    },
    actions: [{ label: 'Done', kind: 'primary', value: 'done' }],
  };
}

function createStep(app, users, onCreated) {
  const name = h('input', { type: 'text', name: 'name', autocomplete: 'off', maxlength: 200 });
  const expires = h('input', { type: 'datetime-local', name: 'expires_at', min: localInputValue(Date.now()) });
  const fields = {
    name: formField({
      label: 'Name',
      input: name,
      help: 'What the key is for, for example the script or machine that uses it.',
    }),
    expires_at: formField({
      label: 'Expires',
      input: expires,
      help: 'Optional. Leave it empty for a key that does not expire.',
    }),
  };
  let owner = null;
  if (app.canWriteApiKeys) {
    // Another user's key needs API_KEY_WRITE (API.md §11). With ACCOUNT_READ the users
    // within the role guard are listed; without it the name is typed.
    if (users) {
      owner = h(
        'select',
        { name: 'username' },
        users
          .filter((user) => user.id === app.me.id || holdsAll(app.roles, user.roles))
          .sort((a, b) => a.username.localeCompare(b.username))
          .map((user) => h('option', { value: user.username, text: user.username, selected: user.id === app.me.id })),
      );
    } else {
      owner = h('input', { type: 'text', name: 'username', autocomplete: 'off', spellcheck: 'false' });
      owner.value = app.username;
    }
    fields.username = formField({ label: 'User', input: owner, help: 'The key logs in as this user.' });
  }
  return {
    title: 'Add API Key',
    body: () =>
      h(
        'div',
        { class: 'form' },
        fields.name.el,
        fields.username ? fields.username.el : null,
        fields.expires_at.el,
        fields.username
          ? null
          : h('p', { class: 'muted', text: `The key logs in as you (${app.username}).` }),
      ),
    actions: [
      { label: 'Cancel', kind: 'secondary', value: null },
      {
        label: 'Create',
        kind: 'primary',
        run: async (ctx) => {
          for (const field of Object.values(fields)) field.setError(null);
          const data = { name: name.value };
          if (owner && owner.value !== app.username) data.username = owner.value;
          if (expires.value) {
            const millis = new Date(expires.value).getTime();
            if (!Number.isFinite(millis)) {
              fields.expires_at.setError('Enter a date and time, or leave it empty.');
              expires.focus();
              return undefined;
            }
            data.expires_at = { $date: millis };
          } else if (expires.validity && expires.validity.badInput) {
            fields.expires_at.setError('Enter a complete date and time, or leave it empty.');
            expires.focus();
            return undefined;
          }
          let entry;
          try {
            entry = await app.rpc.call('api_key.create', [data]);
          } catch (err) {
            if (!showFieldErrors(err, fields, ctx)) ctx.setError(explain(err));
            return undefined;
          }
          onCreated(entry);
          ctx.render(shownKeyStep(entry, { reset: false }));
          return undefined;
        },
      },
    ],
  };
}

/** A -32602 answer at its fields; true when it was one. */
function showFieldErrors(err, fields, ctx) {
  if (!(err instanceof RpcError) || err.code !== -32602 || !err.extra.length) return false;
  const unplaced = [];
  let first = null;
  for (const [attribute, message] of err.extra) {
    const path = fieldPath(attribute).split('.')[0];
    const field = fields[path];
    if (field) {
      field.setError(sentence(message));
      first = first || field.input;
    } else {
      unplaced.push(`${fieldPath(attribute) || 'Request'}: ${message}`);
    }
  }
  ctx.setError(unplaced.length ? sentence(unplaced.join('; ')) : null);
  if (first) first.focus();
  return true;
}

export function apiKeysView(app) {
  const titleId = uid('keys-title');
  const title = h('h2', { class: 'card-title', id: titleId });
  const addButton = h('button', { type: 'button', class: 'button button-primary', text: 'Add API Key' });
  const body = h('div', { class: 'table-wrap' }, h('p', { class: 'muted', text: 'Loading the API keys…' }));
  const el = h(
    'div',
    { class: 'page' },
    h('div', { class: 'page-header' }, h('h1', { text: 'API Keys' })),
    h(
      'section',
      { class: 'card', 'aria-labelledby': titleId },
      h('div', { class: 'card-header' }, title, addButton),
      h('p', {
        class: 'muted',
        text:
          'An API key logs in as its user without a password or a code, for scripts and ' +
          'automation. It is shown only once, when it is made or reset.',
      }),
      body,
    ),
  );
  let keys = null;
  /** UserEntry list (ACCOUNT_READ only): key owners' roles, for the role guard. */
  let users = null;
  let ticket = null;
  let destroyed = false;
  let shownRoles = null;

  const own = (key) => app.me && key.user_identifier === app.me.id;
  /** Other users' keys: API_KEY_WRITE within the role guard (when the owner is known). */
  function mayChange(key) {
    if (own(key)) return true;
    if (!app.canWriteApiKeys) return false;
    const owner = users && users.find((user) => user.id === key.user_identifier);
    return owner ? holdsAll(app.roles, owner.roles) : true;
  }

  addButton.addEventListener('click', async () => {
    await openDialog(createStep(app, users, () => load()));
  });

  async function load() {
    const mine = {};
    ticket = mine;
    try {
      const [list, people] = await Promise.all([
        app.rpc.call(app.canReadApiKeys ? 'api_key.query' : 'api_key.my_keys'),
        app.canReadAccounts && app.canReadApiKeys ? app.rpc.call('user.query') : Promise.resolve(null),
      ]);
      if (destroyed || ticket !== mine) return;
      keys = list;
      users = people;
      render();
    } catch (err) {
      if (destroyed || ticket !== mine) return;
      replace(body, h('p', { class: 'form-error', role: 'alert', text: describeError(err) }));
    }
  }

  function resetKey(key) {
    return openDialog({
      title: `Reset ${key.name}?`,
      body: () => [
        h('p', {
          text:
            `A new key replaces “${key.name}” of ${key.username}: the current key stops working at ` +
            'once and the sessions that use it end. The new key is shown once.',
        }),
        key.revoked ? h('p', { class: 'muted', text: 'The key is revoked; after the reset the new key works.' }) : null,
      ],
      actions: [
        { label: 'Cancel', kind: 'secondary', value: null },
        {
          label: 'Reset',
          kind: 'danger',
          run: async (ctx) => {
            let entry;
            try {
              entry = await app.rpc.call('api_key.update', [key.id, { reset: true }]);
            } catch (err) {
              ctx.setError(explain(err));
              return undefined;
            }
            load();
            ctx.render(shownKeyStep(entry, { reset: true }));
            return undefined;
          },
        },
      ],
      initialFocus: (dialog) => dialog.querySelector('.button-secondary'),
    });
  }

  async function deleteKey(key) {
    const value = await openDialog({
      title: `Delete ${key.name}?`,
      body: () => [
        h('p', {
          text:
            `The key “${key.name}” of ${key.username} stops working at once and the sessions ` +
            'that use it end. Scripts that use it can no longer log in. This cannot be undone.',
        }),
      ],
      actions: [
        { label: 'Cancel', kind: 'secondary', value: null },
        {
          label: 'Delete',
          kind: 'danger',
          run: async (ctx) => {
            try {
              await app.rpc.call('api_key.delete', [key.id]);
            } catch (err) {
              ctx.setError(explain(err));
              return undefined;
            }
            return 'deleted';
          },
        },
      ],
      initialFocus: (dialog) => dialog.querySelector('.button-secondary'),
    });
    if (value === 'deleted') {
      app.toast(`API key ${key.name} is deleted.`, 'ok');
      keys = keys.filter((k) => k.id !== key.id);
      render();
      load();
    }
  }

  function actionButton(key, action, text, kind, run) {
    const button = h('button', {
      type: 'button',
      class: `button ${kind} button-small`,
      text,
      'aria-label': `${text} ${key.name}`,
      dataset: { action, keyId: String(key.id) },
    });
    button.addEventListener('click', async () => {
      await run();
      const active = document.activeElement;
      if (document.querySelector('dialog[open]')) return;
      if (!active || active === document.body || !active.isConnected) focusKey(key.id, action);
    });
    return button;
  }

  function focusKey(id, action) {
    const buttons = [...body.querySelectorAll('button[data-action]')].filter((b) => b.dataset.keyId === String(id));
    const target = buttons.find((b) => b.dataset.action === action) || buttons[0] || addButton;
    target.focus();
  }

  function render() {
    const reader = app.canReadApiKeys;
    shownRoles = JSON.stringify(app.roles);
    title.textContent = reader ? 'All API Keys' : 'Your API Keys';
    if (!keys) return;
    const active = document.activeElement;
    const kept = active && body.contains(active) && active.dataset.action ? { ...active.dataset } : null;
    const sorted = [...keys].sort(
      (a, b) => a.username.localeCompare(b.username) || a.name.localeCompare(b.name) || a.id - b.id,
    );
    const columns = [
      { label: 'Name', className: 'cell-name' },
      reader ? { label: 'User' } : null,
      { label: 'Created' },
      { label: 'Expires' },
      { label: 'Status', className: 'cell-status' },
      { label: 'Actions', className: 'cell-actions' },
    ].filter(Boolean);
    const rows = sorted.map((key) => {
      const state = keyState(key);
      const actions = mayChange(key)
        ? [
            actionButton(key, 'reset', 'Reset', 'button-secondary', () => resetKey(key)),
            actionButton(key, 'delete', 'Delete', 'button-danger-outline', () => deleteKey(key)),
          ]
        : [];
      const cells = [
        key.name,
        reader ? key.username : null,
        dateTime(wireMillis(key.created_at)),
        key.expires_at ? dateTime(wireMillis(key.expires_at)) : 'Never',
        h(
          'div',
          {},
          h('span', { class: `badge badge-${state.tone}`, text: state.label }),
          state.detail ? h('span', { class: 'status-detail', text: state.detail }) : null,
        ),
        actions.length ? h('div', { class: 'row-actions' }, actions) : null,
      ];
      return {
        attrs: { dataset: { keyId: String(key.id) } },
        cells: reader ? cells : cells.filter((_, index) => index !== 1),
      };
    });
    replace(
      body,
      rows.length
        ? stackedTable({ columns, rows, caption: reader ? 'All API keys' : 'Your API keys', className: 'keys-table' })
        : h('p', { class: 'muted', text: reader ? 'There are no API keys.' : 'You have no API keys.' }),
    );
    if (kept) focusKey(kept.keyId, kept.action);
  }

  function onVisible() {
    if (document.visibilityState === 'visible') load();
  }

  render();
  return {
    el,
    mounted() {
      document.addEventListener('visibilitychange', onVisible);
      load();
    },
    update() {
      if (shownRoles !== JSON.stringify(app.roles)) load();
    },
    onCollectionUpdate({ collection }) {
      if (collection === 'user.query') load();
    },
    destroy() {
      destroyed = true;
      document.removeEventListener('visibilitychange', onVisible);
    },
  };
}
