// Settings > Users (ACCOUNT_READ): the local users (user.query, API.md §5) with their
// two-factor state, kept current by the user.query events. With ACCOUNT_WRITE, each row
// offers a one-time password for a user who lost their authenticator
// (auth.generate_onetime_password, API.md §10): shown once, valid 24 hours, one login, in
// which the user sets a new password and a new secret.

import { h, replace, uid } from '../dom.js';
import { openDialog } from '../dialog.js';
import { describeError, sentence } from '../errors.js';
import { RpcError } from '../rpc.js';
import { copyButton } from './parts.js';

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
            throw err;
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

export function usersView(app) {
  const titleId = uid('users-title');
  const body = h('div', { class: 'table-wrap' }, h('p', { class: 'muted', text: 'Loading the users…' }));
  const el = h(
    'div',
    { class: 'page' },
    h('div', { class: 'page-header' }, h('h1', { text: 'Users' })),
    h(
      'section',
      { class: 'card', 'aria-labelledby': titleId },
      h('h2', { class: 'card-title', id: titleId, text: 'Local Users' }),
      body,
    ),
  );
  let users = null;
  let shownWriter = null;
  let loading = null;
  let destroyed = false;

  async function load() {
    const ticket = {};
    loading = ticket;
    try {
      const list = await app.rpc.call('user.query');
      if (destroyed || loading !== ticket) return;
      users = [...list].sort((a, b) => a.username.localeCompare(b.username));
      render();
    } catch (err) {
      if (destroyed || loading !== ticket) return;
      replace(body, h('p', { class: 'form-error', role: 'alert', text: describeError(err) }));
    }
  }

  function render() {
    if (!users) return;
    const writer = app.canWriteAccounts;
    shownWriter = writer;
    replace(
      body,
      h(
        'table',
        { class: 'table' },
        h(
          'thead',
          {},
          h(
            'tr',
            {},
            h('th', { scope: 'col', text: 'Username' }),
            h('th', { scope: 'col', text: 'Full Name' }),
            h('th', { scope: 'col', text: 'Two-Factor' }),
            h('th', { scope: 'col', text: 'Status' }),
            writer ? h('th', { scope: 'col', text: 'Actions' }) : null,
          ),
        ),
        h(
          'tbody',
          {},
          users.map((user) => {
            const action = writer
              ? h('button', {
                  type: 'button',
                  class: 'button button-secondary button-small',
                  text: 'One-Time Password',
                  'aria-label': `One-Time Password for ${user.username}`,
                  disabled: user.locked,
                  title: user.locked ? 'Unlock the account first' : null,
                })
              : null;
            if (action) action.addEventListener('click', () => openDialog(onetimeStep(app, user)));
            return h(
              'tr',
              { dataset: { username: user.username } },
              h('th', { scope: 'row', text: user.username }),
              h('td', { text: user.full_name || '—' }),
              h('td', { text: user.twofactor_auth_configured ? 'Configured' : 'Not configured' }),
              h('td', { text: user.locked ? 'Locked' : 'Active' }),
              writer ? h('td', {}, action) : null,
            );
          }),
        ),
      ),
    );
  }

  return {
    el,
    update() {
      // Shared data changes often (clock, alerts); only the roles change this table.
      if (users && shownWriter !== app.canWriteAccounts) render();
    },
    mounted: load,
    onCollectionUpdate({ collection }) {
      if (collection === 'user.query') load();
    },
    destroy() {
      destroyed = true;
    },
  };
}
