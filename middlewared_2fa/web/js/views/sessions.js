// Settings > Sessions (API.md §9): the sessions of the caller's user, or every session
// with AUTH_SESSIONS_READ (auth.sessions), kept current by the auth.sessions events
// (added, removed), which reach both. End (auth.terminate_session) is offered for the
// caller's own other sessions and, with AUTH_SESSIONS_WRITE, for other users' sessions;
// the server applies the role guard there, so an EPERM answer is shown in the dialog.
// The current session is marked and never offered as "End": Log Out ends it. End My
// Other Sessions (auth.terminate_other_sessions) ends every other session of the caller.

import { h, replace, uid } from '../dom.js';
import { openDialog } from '../dialog.js';
import { describeError } from '../errors.js';
import { wireMillis } from '../format.js';
import { stackedTable } from './table.js';

/** How often the Age column is brought up to date, milliseconds. */
const AGE_REFRESH_MS = 30000;

const CREDENTIALS = {
  LOGIN_PASSWORD: 'Password',
  LOGIN_TWOFACTOR: 'Password and code',
  LOGIN_ONETIME_PASSWORD: 'One-time password',
  API_KEY: 'API key',
  TOKEN: 'Re-login token',
  UNIX_SOCKET: 'Unix socket',
};

const SECOND_FACTORS = {
  RECOVERY_CODE: 'Password and recovery code',
  WEBAUTHN: 'Password and passkey',
};

/** A credentials name (LOGIN_PASSWORD...) in words; an unknown one as it is. */
export function credentialName(credentials) {
  return CREDENTIALS[credentials] || credentials;
}

/** The credential of a session (or of a token's parent login) in words. */
function credentialWords(credentials, data) {
  if (credentials === 'LOGIN_TWOFACTOR' && data && SECOND_FACTORS[data.second_factor]) {
    return SECOND_FACTORS[data.second_factor];
  }
  if (credentials === 'API_KEY' && data && data.api_key) return `API key “${data.api_key.name}”`;
  return credentialName(credentials);
}

/** "Re-login token (from a password and code login)" and the like. */
export function credentialLabel(entry) {
  const data = entry.credentials_data || {};
  const words = credentialWords(entry.credentials, data);
  if (entry.credentials === 'TOKEN' && data.parent) {
    const parent = credentialWords(data.parent.credentials, data.parent.credentials_data);
    return `${words} (from a login with: ${parent.toLowerCase()})`;
  }
  return words;
}

/** "127.0.0.1:50712" stays; "UNIX_SOCKET uid 0" becomes "Unix socket, uid 0". */
function originLabel(origin) {
  const match = /^UNIX_SOCKET uid (\d+)$/.exec(origin || '');
  return match ? `Unix socket, uid ${match[1]}` : origin || '—';
}

/** "under a minute", "5 min", "2 h 5 min", "3 d 4 h" between `millis` and `now`. */
export function ageText(millis, now = Date.now()) {
  const minutes = Math.floor(Math.max(0, now - millis) / 60000);
  if (minutes < 1) return 'under a minute';
  if (minutes < 60) return `${minutes} min`;
  const hours = Math.floor(minutes / 60);
  if (hours < 24) return minutes % 60 ? `${hours} h ${minutes % 60} min` : `${hours} h`;
  const days = Math.floor(hours / 24);
  return hours % 24 ? `${days} d ${hours % 24} h` : `${days} d`;
}

export function sessionsView(app) {
  const titleId = uid('sessions-title');
  const intro = h('p', { class: 'muted' });
  const endOthers = h('button', { type: 'button', class: 'button button-secondary', text: 'End My Other Sessions', hidden: true });
  const heading = h('h2', { class: 'card-title', id: titleId, tabindex: '-1', text: 'Active Sessions' });
  const body = h('div', { class: 'table-wrap' }, h('p', { class: 'muted', text: 'Loading the sessions…' }));
  const el = h(
    'div',
    { class: 'page' },
    h('div', { class: 'page-header' }, h('h1', { text: 'Sessions' })),
    h(
      'section',
      { class: 'card', 'aria-labelledby': titleId },
      h('div', { class: 'card-header' }, heading, endOthers),
      intro,
      body,
    ),
  );
  let sessions = null;
  let shownRoles = null;
  let loading = null;
  let destroyed = false;
  let ageTimer = null;
  let ages = []; // [{el, millis}] of the Age cells shown

  endOthers.addEventListener('click', () => endOtherSessions());

  function readsAll() {
    return app.canReadSessions;
  }

  /** The caller may end `entry` (not the current one): its own, or with the write role. */
  function mayEnd(entry) {
    if (entry.current) return false;
    return ownSession(entry) || app.canWriteSessions;
  }

  function ownSession(entry) {
    return (entry.credentials_data || {}).username === app.username;
  }

  async function load() {
    const ticket = {};
    loading = ticket;
    try {
      const list = await app.rpc.call('auth.sessions');
      if (destroyed || loading !== ticket) return;
      sessions = list;
      render();
    } catch (err) {
      if (destroyed || loading !== ticket) return;
      replace(body, h('p', { class: 'form-error', role: 'alert', text: describeError(err) }));
    }
  }

  function sorted() {
    // The current session first, then the newest.
    return [...sessions].sort(
      (a, b) => Number(b.current) - Number(a.current) || wireMillis(b.created_at) - wireMillis(a.created_at),
    );
  }

  function render() {
    if (!sessions) return;
    const everyone = readsAll();
    shownRoles = JSON.stringify(app.roles);
    intro.textContent = everyone
      ? 'Every session logged in to this server: browsers, command-line clients and API ' +
        'keys. Ending a session logs it out and closes its connection; the re-login tokens ' +
        'it made stop working.'
      : `The sessions logged in as ${app.username}: this browser and any other browser, ` +
        'command-line client or API key. Ending a session logs it out and closes its ' +
        'connection; the re-login tokens it made stop working.';
    const others = sessions.filter((s) => !s.current && ownSession(s));
    endOthers.hidden = others.length === 0;
    // Keep the keyboard focus on the same control across a re-render.
    const active = document.activeElement;
    const focusedId = active && body.contains(active) && active.dataset ? active.dataset.sessionId : null;
    const columns = [
      everyone ? { label: 'User' } : null,
      { label: 'Signed In With' },
      { label: 'Origin' },
      { label: 'Secure Transport' },
      { label: 'Age' },
      { label: 'Actions', className: 'cell-actions' },
    ].filter(Boolean);
    ages = [];
    const rows = sorted().map((entry) => {
      const data = entry.credentials_data || {};
      const created = wireMillis(entry.created_at);
      const age = h('time', {
        datetime: new Date(created).toISOString(),
        title: `Started ${new Date(created).toLocaleString()}`,
        text: ageText(created),
      });
      ages.push({ el: age, millis: created });
      const marker = entry.current ? h('span', { class: 'badge badge-ok session-current', text: 'This session' }) : null;
      let action;
      if (entry.current) {
        action = h('span', { class: 'muted', text: 'Log Out ends it' });
      } else if (mayEnd(entry)) {
        action = h('button', {
          type: 'button',
          class: 'button button-danger-outline button-small',
          text: 'End',
          'aria-label': `End the session of ${data.username} from ${originLabel(entry.origin)}`,
          dataset: { sessionId: entry.id },
          onclick: (event) => endSession(entry, event.currentTarget),
        });
      } else {
        action = null;
      }
      // The first column names the row: the user (all sessions) or the credential.
      const first = everyone ? data.username || '—' : credentialLabel(entry);
      const cells = [
        h('span', {}, first, marker ? ' ' : null, marker),
        everyone ? credentialLabel(entry) : null,
        originLabel(entry.origin),
        entry.secure_transport ? 'Yes' : 'No',
        age,
        action,
      ];
      return {
        attrs: { class: entry.current ? 'row-current' : null, dataset: { session: entry.id } },
        cells: everyone ? cells : cells.filter((cell, index) => index !== 1),
      };
    });
    replace(body, stackedTable({ columns, rows, caption: 'Sessions' }));
    if (focusedId) {
      const again = body.querySelector(`[data-session-id="${CSS.escape(focusedId)}"]`);
      if (again) again.focus();
      else heading.focus();
    }
  }

  function updateAges() {
    const now = Date.now();
    for (const { el: cell, millis } of ages) cell.textContent = ageText(millis, now);
  }

  function afterChange(opener) {
    // The row of the opener may be gone: keep the focus inside the card.
    if (!opener || !opener.isConnected || document.activeElement === document.body) heading.focus();
  }

  async function endSession(entry, opener) {
    const data = entry.credentials_data || {};
    const own = ownSession(entry);
    const result = await openDialog({
      title: 'End Session?',
      body: () => [
        h('p', {
          text:
            `${own ? 'Your' : `${data.username}’s`} session from ${originLabel(entry.origin)} ` +
            `(${credentialLabel(entry).toLowerCase()}, started ${ageText(wireMillis(entry.created_at))} ago) ` +
            'is logged out and its connection closed. The re-login tokens it made stop working.',
        }),
        own
          ? null
          : h('p', { class: 'muted', text: `${data.username} can log in again; to keep them out, lock the account.` }),
      ],
      actions: [
        { label: 'Cancel', kind: 'secondary', value: null },
        {
          label: 'End Session',
          kind: 'danger',
          run: async () => ((await app.rpc.call('auth.terminate_session', [entry.id])) ? 'ended' : 'gone'),
        },
      ],
      initialFocus: (dialog) => dialog.querySelector('.button-secondary'),
    });
    if (result === null) return;
    app.toast(result === 'ended' ? 'The session was ended.' : 'That session had already ended.', result === 'ended' ? 'ok' : 'info');
    await load();
    afterChange(opener);
  }

  async function endOtherSessions() {
    const count = sessions ? sessions.filter((s) => !s.current && ownSession(s)).length : 0;
    const result = await openDialog({
      title: 'End Your Other Sessions?',
      body: () => [
        h('p', {
          text:
            `${count === 1 ? 'Your 1 other session' : `All ${count} other sessions`} logged in as ` +
            `${app.username} (other browsers, command-line clients, API keys) ` +
            `${count === 1 ? 'is' : 'are'} logged out and ${count === 1 ? 'its connection' : 'their connections'} ` +
            'closed. This session stays logged in.',
        }),
      ],
      actions: [
        { label: 'Cancel', kind: 'secondary', value: null },
        {
          label: 'End Other Sessions',
          kind: 'danger',
          run: async () => {
            await app.rpc.call('auth.terminate_other_sessions');
            return 'ended';
          },
        },
      ],
      initialFocus: (dialog) => dialog.querySelector('.button-secondary'),
    });
    if (result !== 'ended') return;
    app.toast('Your other sessions were ended.', 'ok');
    await load();
    afterChange(endOthers.hidden ? null : endOthers);
  }

  return {
    el,
    update() {
      // Shared data changes often (clock, alerts); only the roles change this table.
      if (sessions && shownRoles !== JSON.stringify(app.roles)) load();
    },
    mounted() {
      load();
      ageTimer = setInterval(updateAges, AGE_REFRESH_MS);
    },
    onCollectionUpdate({ collection }) {
      if (collection === 'auth.sessions') load();
    },
    destroy() {
      destroyed = true;
      clearInterval(ageTimer);
    },
  };
}
