// System > Time (API.md §6), for SYSTEM_SECURITY_READ: the clock status
// (system.time_sync.status) with each NTP server's answer, Check Now
// (system.time_sync.check) and the NTP servers the check asks (system.ntpserver.query),
// which SYSTEM_SECURITY_WRITE may add, edit and delete. Validation errors (-32602,
// data.extra = [[attribute, message, errno]]) are shown at their fields.
//
// There is no event for the server list: it is read again whenever a new clock status
// arrives (after every change here, and when the page becomes visible again; a status
// call waits for the check that follows a change of the list, so it is never stale).

import { h, replace, uid } from '../dom.js';
import { openDialog } from '../dialog.js';
import { describeError, fieldPath, sentence } from '../errors.js';
import { formField } from '../form.js';
import { clockSummary, offsetWords } from '../format.js';
import { RpcError } from '../rpc.js';
import { checkNowButton } from './parts.js';
import { stackedTable } from './table.js';

const DEFAULTS = { address: '', port: 123, iburst: true, prefer: false, minpoll: 6, maxpoll: 10 };
const POLL_MIN = 4;
const POLL_MAX = 17;

/** "host" or "host:port" (the port only when it is not 123). */
function serverLabel(server) {
  const host = server.address.includes(':') ? `[${server.address}]` : server.address;
  return server.port === 123 ? server.address : `${host}:${server.port}`;
}

/** 2^n seconds in words: 6 -> "64 s", 10 -> "17 min", 17 -> "36 h". */
function pollWords(exponent) {
  const secondsValue = 2 ** exponent;
  if (secondsValue < 120) return `${secondsValue} s`;
  if (secondsValue < 7200) return `${Math.round(secondsValue / 60)} min`;
  return `${Math.round(secondsValue / 3600)} h`;
}

/** One server's offset, to the millisecond, with its direction (ntplib sign). */
function preciseOffset(offset) {
  if (offset === null || offset === undefined) return '—';
  const value = Math.abs(offset).toFixed(3);
  if (Number(value) === 0) return '0.000 s';
  return `${value} s ${offset > 0 ? 'behind' : 'ahead'}`;
}

function delayWords(delay) {
  return delay === null || delay === undefined ? '—' : `${(delay * 1000).toFixed(1)} ms`;
}

export function timeView(app) {
  const statusTitleId = uid('clock-status-title');
  const serversTitleId = uid('ntp-servers-title');
  const badge = h('span', { class: 'badge' });
  const summary = h('p', { class: 'clock-text', role: 'status' });
  const facts = h('dl', { class: 'facts' });
  const answers = h('div', { class: 'table-wrap clock-answers' });
  const checkButton = checkNowButton(app);
  const checkActions = h('div', { class: 'card-actions' }, checkButton);
  const addButton = h('button', { type: 'button', class: 'button button-primary', text: 'Add NTP Server' });
  const serversHeading = h('h2', { class: 'card-title', id: serversTitleId, tabindex: '-1', text: 'NTP Servers' });
  const serversBody = h('div', { class: 'table-wrap' }, h('p', { class: 'muted', text: 'Loading the NTP servers…' }));
  const el = h(
    'div',
    { class: 'page' },
    h('div', { class: 'page-header' }, h('h1', { text: 'Time' })),
    h(
      'section',
      { class: 'card', 'aria-labelledby': statusTitleId },
      h('div', { class: 'card-header' }, h('h2', { class: 'card-title', id: statusTitleId, text: 'Clock Status' }), badge),
      summary,
      facts,
      answers,
      checkActions,
    ),
    h(
      'section',
      { class: 'card', 'aria-labelledby': serversTitleId },
      h('div', { class: 'card-header' }, serversHeading, addButton),
      h('p', {
        class: 'muted',
        text:
          'The daemon asks these servers how far off its clock is (it never sets the clock). ' +
          'List the servers the system’s NTP client uses, so that the check measures what ' +
          'one-time codes depend on.',
      }),
      serversBody,
    ),
  );
  let servers = null;
  let shownCheckedAt = null; // checked_at of the last status seen
  let shownWriter = null;
  let loading = null;
  let destroyed = false;

  addButton.addEventListener('click', () => edit(null, addButton));

  async function loadServers() {
    const ticket = {};
    loading = ticket;
    try {
      const list = await app.rpc.call('system.ntpserver.query');
      if (destroyed || loading !== ticket) return;
      servers = [...list].sort((a, b) => a.id - b.id);
      renderServers();
    } catch (err) {
      if (destroyed || loading !== ticket) return;
      replace(serversBody, h('p', { class: 'form-error', role: 'alert', text: describeError(err) }));
    }
  }

  function renderStatus() {
    const status = app.timeSync;
    checkActions.hidden = !app.canWriteSecurity;
    if (!status) {
      badge.className = 'badge';
      badge.textContent = app.timeSyncError ? 'Unknown' : 'Checking';
      summary.textContent = app.timeSyncError || 'Checking the server clock…';
      replace(facts);
      replace(answers);
      return;
    }
    const words = clockSummary(status);
    badge.className = `badge badge-${words.tone}`;
    badge.textContent = words.label;
    summary.textContent = words.text;
    replace(
      facts,
      h('dt', { text: 'Offset' }),
      h('dd', { text: offsetWords(status.offset) }),
      h('dt', { text: 'Tolerated' }),
      h('dd', { text: `up to ${Number(status.max_offset).toFixed(0)} s either way` }),
      h('dt', { text: 'Last check' }),
      h('dd', {}, h('time', { datetime: new Date(status.checked_at * 1000).toISOString(), text: new Date(status.checked_at * 1000).toLocaleString() })),
    );
    const list = status.servers || [];
    if (!list.length) {
      replace(answers);
      return;
    }
    replace(
      answers,
      stackedTable({
        caption: 'Answers of the NTP servers',
        columns: [
          { label: 'Server' },
          { label: 'Answer' },
          { label: 'Offset' },
          { label: 'Delay' },
          { label: 'Stratum' },
          { label: 'Error' },
        ],
        rows: list.map((server) => ({
          attrs: { dataset: { server: serverLabel(server) } },
          cells: [
            serverLabel(server),
            h('span', {
              class: server.reachable ? 'badge badge-ok' : 'badge badge-bad',
              text: server.reachable ? 'Usable' : 'Not usable',
            }),
            preciseOffset(server.offset),
            delayWords(server.delay),
            server.stratum === null || server.stratum === undefined ? '—' : String(server.stratum),
            server.error ? sentence(server.error) : '—',
          ],
        })),
      }),
      h('p', {
        class: 'field-help',
        text: '“Behind” means the server clock is behind the NTP server; “ahead”, that it is ahead of it.',
      }),
    );
  }

  function renderServers() {
    if (!servers) return;
    const writer = app.canWriteSecurity;
    shownWriter = writer;
    addButton.hidden = !writer;
    const active = document.activeElement;
    const focused = active && serversBody.contains(active) && active.dataset.action
      ? `[data-action="${active.dataset.action}"][data-server-id="${active.dataset.serverId}"]`
      : null;
    if (!servers.length) {
      replace(
        serversBody,
        h('p', {
          class: 'note note-warn',
          text:
            'No NTP server is configured, so the server clock is not checked.' +
            (writer ? ' Add the servers the system’s NTP client uses.' : ''),
        }),
      );
    } else {
      replace(
        serversBody,
        stackedTable({
          caption: 'NTP servers',
          columns: [
            { label: 'Address' },
            { label: 'Port' },
            { label: 'Options' },
            { label: 'Poll Interval' },
            writer ? { label: 'Actions', className: 'cell-actions' } : null,
          ].filter(Boolean),
          rows: servers.map((server) => ({
            attrs: { dataset: { serverId: String(server.id) } },
            cells: [
              server.address,
              String(server.port),
              [server.iburst ? 'iburst' : null, server.prefer ? 'prefer' : null].filter(Boolean).join(', ') || '—',
              `${pollWords(server.minpoll)} to ${pollWords(server.maxpoll)} (${server.minpoll}–${server.maxpoll})`,
              writer
                ? h(
                    'div',
                    { class: 'row-actions' },
                    h('button', {
                      type: 'button',
                      class: 'button button-secondary button-small',
                      text: 'Edit',
                      'aria-label': `Edit ${serverLabel(server)}`,
                      dataset: { action: 'edit', serverId: String(server.id) },
                      onclick: (event) => edit(server, event.currentTarget),
                    }),
                    h('button', {
                      type: 'button',
                      class: 'button button-danger-outline button-small',
                      text: 'Delete',
                      'aria-label': `Delete ${serverLabel(server)}`,
                      dataset: { action: 'delete', serverId: String(server.id) },
                      onclick: (event) => remove(server, event.currentTarget),
                    }),
                  )
                : null,
            ].slice(0, writer ? 5 : 4),
          })),
        }),
      );
    }
    if (focused) {
      const again = serversBody.querySelector(focused);
      if (again) again.focus();
      else serversHeading.focus();
    }
  }

  /** After a change: the list again, and the status (which waits for the new check). */
  async function changed(opener) {
    await loadServers();
    if (!opener || !opener.isConnected) serversHeading.focus();
    app.loadTimeSync();
  }

  // -- add / edit -----------------------------------------------------------------------

  async function edit(server, opener) {
    const values = server || DEFAULTS;
    const address = h('input', { type: 'text', name: 'address', maxlength: 253, autocomplete: 'off', spellcheck: 'false', autocapitalize: 'none', value: values.address });
    const port = h('input', { type: 'number', name: 'port', min: 1, max: 65535, step: 1, inputmode: 'numeric', class: 'input-narrow', value: values.port });
    const iburst = h('input', { type: 'checkbox', name: 'iburst' });
    const prefer = h('input', { type: 'checkbox', name: 'prefer' });
    iburst.checked = Boolean(values.iburst);
    prefer.checked = Boolean(values.prefer);
    const pollInput = (name, value) =>
      h('input', { type: 'number', name, min: POLL_MIN, max: POLL_MAX, step: 1, inputmode: 'numeric', class: 'input-narrow', value });
    const minpoll = pollInput('minpoll', values.minpoll);
    const maxpoll = pollInput('maxpoll', values.maxpoll);
    const fields = {
      address: formField({ label: 'Address', input: address, help: 'A host name or an IPv4 or IPv6 address.' }),
      port: formField({ label: 'Port', input: port, help: 'UDP port, 123 unless the server listens elsewhere.' }),
      iburst: formField({ label: 'iburst', input: iburst, inline: true, help: 'Send a burst of packets at start (an NTP client option, kept as TrueNAS does).' }),
      prefer: formField({ label: 'Prefer', input: prefer, inline: true, help: 'Prefer this server over the others (an NTP client option).' }),
      minpoll: formField({ label: 'Min Poll', input: minpoll }),
      maxpoll: formField({ label: 'Max Poll', input: maxpoll }),
    };
    const pollHelp = h('p', {
      class: 'field-help',
      text:
        `Poll intervals are powers of two in seconds, ${POLL_MIN} to ${POLL_MAX} (6 = 64 s, 10 = 17 min); ` +
        'min poll may not exceed max poll. They are NTP client options; the clock check does not use them.',
    });
    const numbers = { port, minpoll, maxpoll };

    function clearErrors() {
      for (const f of Object.values(fields)) f.setError(null);
    }

    /** The form's values, or null (with the errors shown) when a number is not whole. */
    function read() {
      const result = {
        address: address.value.trim(),
        iburst: iburst.checked,
        prefer: prefer.checked,
      };
      let first = null;
      for (const [name, input] of Object.entries(numbers)) {
        const text = input.value.trim();
        if (!/^\d+$/.test(text)) {
          fields[name].setError('Enter a whole number.');
          first = first || input;
        } else {
          result[name] = Number(text);
        }
      }
      if (first) {
        first.focus();
        return null;
      }
      return result;
    }

    const saved = await openDialog({
      title: server ? `Edit NTP Server ${serverLabel(server)}` : 'Add NTP Server',
      body: () => [
        fields.address.el,
        fields.port.el,
        fields.iburst.el,
        fields.prefer.el,
        h('fieldset', { class: 'fieldset' }, h('legend', { text: 'Poll Interval' }), h('div', { class: 'field-grid' }, fields.minpoll.el, fields.maxpoll.el), pollHelp),
      ],
      actions: [
        { label: 'Cancel', kind: 'secondary', value: null },
        {
          label: 'Save',
          kind: 'primary',
          run: async (ctx) => {
            clearErrors();
            const data = read();
            if (!data) return undefined;
            try {
              return server
                ? await app.rpc.call('system.ntpserver.update', [server.id, data])
                : await app.rpc.call('system.ntpserver.create', [data]);
            } catch (err) {
              if (!(err instanceof RpcError) || err.code !== -32602 || !err.extra.length) throw err;
              const unplaced = [];
              let first = null;
              for (const [attribute, message] of err.extra) {
                const target = fields[fieldPath(attribute)];
                if (target) {
                  target.setError(sentence(message));
                  first = first || target.input;
                } else {
                  unplaced.push(`${fieldPath(attribute) || attribute}: ${message}`);
                }
              }
              ctx.setError(unplaced.length ? sentence(unplaced.join('; ')) : null);
              if (first) first.focus();
              return undefined;
            }
          },
        },
      ],
    });
    if (!saved) return;
    app.toast(server ? `NTP server ${serverLabel(saved)} saved.` : `NTP server ${serverLabel(saved)} added.`, 'ok');
    await changed(opener);
  }

  // -- delete ------------------------------------------------------------------------------

  async function remove(server, opener) {
    const last = servers && servers.length === 1;
    const gone = await openDialog({
      title: 'Delete NTP Server?',
      body: () => [
        h('p', { text: `Remove ${serverLabel(server)} from the servers the clock check asks?` }),
        last
          ? h('p', {
              class: 'note note-warn',
              text:
                'It is the last one: the server clock will no longer be checked, and with ' +
                'two-factor authentication enabled the daemon raises an alert about it.',
            })
          : null,
      ],
      actions: [
        { label: 'Cancel', kind: 'secondary', value: null },
        {
          label: 'Delete',
          kind: 'danger',
          run: async () => {
            await app.rpc.call('system.ntpserver.delete', [server.id]);
            return true;
          },
        },
      ],
      initialFocus: (dialog) => dialog.querySelector('.button-secondary'),
    });
    if (!gone) return;
    app.toast(`NTP server ${serverLabel(server)} deleted.`, 'ok');
    await changed(opener);
  }

  return {
    el,
    update() {
      if (destroyed) return;
      const checkedAt = app.timeSync ? app.timeSync.checked_at : null;
      // A new check may follow a change of the list made elsewhere: read it again.
      if (checkedAt !== null && shownCheckedAt !== null && checkedAt !== shownCheckedAt) loadServers();
      if (checkedAt !== null) shownCheckedAt = checkedAt;
      renderStatus();
      if (servers && shownWriter !== app.canWriteSecurity) renderServers();
    },
    mounted() {
      shownCheckedAt = app.timeSync ? app.timeSync.checked_at : null;
      renderStatus();
      loadServers();
      // The status in memory may be older than the list: ask again (the server answers
      // from memory unless the list changed since its last check).
      app.loadTimeSync();
    },
    destroy() {
      destroyed = true;
    },
  };
}
