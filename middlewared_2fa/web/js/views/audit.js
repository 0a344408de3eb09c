// System > Audit (API.md §7), for SYSTEM_AUDIT_READ: the audit log (audit.query), newest
// first, filtered in the server by event, user, result and time range, and paged there
// with query-options offset and limit (the total comes from query-options count).
// Export downloads every entry of the applied filters as CSV or JSON, built in the page
// as a Blob. There is no audit event: Refresh reads the page again.

import { h, replace, uid } from '../dom.js';
import { describeError, fieldPath, sentence } from '../errors.js';
import { formField } from '../form.js';
import { RpcError } from '../rpc.js';
import { wireMillis } from '../format.js';
import { credentialName } from './sessions.js';
import { stackedTable } from './table.js';

const PAGE_SIZES = [25, 50, 100];
const DEFAULT_PAGE_SIZE = 50;
/** Entries per call while exporting. */
const EXPORT_CHUNK = 1000;
const NEWEST_FIRST = ['-timestamp'];
const MINUTE_MS = 60000;

const EVENTS = {
  AUTHENTICATION: 'Authentication',
  METHOD_CALL: 'Method call',
};

/** The CSV columns of an export and how each is read from an AuditEntry. */
export const CSV_COLUMNS = [
  ['timestamp', (e) => new Date(wireMillis(e.timestamp)).toISOString()],
  ['message_timestamp', (e) => e.message_timestamp],
  ['audit_id', (e) => e.audit_id],
  ['username', (e) => e.username],
  ['address', (e) => e.address],
  ['session', (e) => e.session],
  ['service', (e) => e.service],
  ['event', (e) => e.event],
  ['method', (e) => e.event_data && e.event_data.method],
  ['description', (e) => e.event_data && e.event_data.description],
  ['credentials', (e) => e.event_data && e.event_data.credentials],
  ['error', (e) => e.event_data && e.event_data.error],
  ['success', (e) => e.success],
];

/**
 * One CSV field (RFC 4180): quoted when it holds a comma, quote, CR or LF. A text that a
 * spreadsheet would run as a formula (=, +, -, @, tab or CR first: user names of failed
 * logins are whatever was typed) gets a leading apostrophe (OWASP "CSV injection").
 */
export function csvField(value) {
  if (value === null || value === undefined) return '';
  let text = String(value);
  if (typeof value === 'string' && /^[=+\-@\t\r]/.test(text)) text = `'${text}`;
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

export function auditCsv(entries) {
  const lines = [CSV_COLUMNS.map(([name]) => name).join(',')];
  for (const entry of entries) lines.push(CSV_COLUMNS.map(([, read]) => csvField(read(entry))).join(','));
  return `${lines.join('\r\n')}\r\n`;
}

function download(name, text, type) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const link = h('a', { href: url, download: name, hidden: true });
  document.body.append(link);
  link.click();
  link.remove();
  // The download has started from the click; the URL is not needed after this task.
  setTimeout(() => URL.revokeObjectURL(url), 0);
}

/** "20250102T030405Z": the export's time in file names. */
function fileStamp(date) {
  return date.toISOString().replace(/\.\d+Z$/, 'Z').replaceAll('-', '').replaceAll(':', '');
}

/** Milliseconds of a datetime-local value (local time), or null when empty or invalid. */
function localMillis(value) {
  if (!value) return null;
  const millis = new Date(value).getTime();
  return Number.isFinite(millis) ? millis : null;
}

export function auditView(app) {
  const titleId = uid('audit-title');
  const filtersId = uid('audit-filters');
  const event = h(
    'select',
    { name: 'event' },
    h('option', { value: '', text: 'All events' }),
    Object.entries(EVENTS).map(([value, text]) => h('option', { value, text })),
  );
  const user = h('input', { type: 'text', name: 'username', autocomplete: 'off', autocapitalize: 'none', spellcheck: 'false' });
  const result = h(
    'select',
    { name: 'success' },
    h('option', { value: '', text: 'Any result' }),
    h('option', { value: 'true', text: 'Succeeded' }),
    h('option', { value: 'false', text: 'Failed' }),
  );
  const from = h('input', { type: 'datetime-local', name: 'from' });
  const to = h('input', { type: 'datetime-local', name: 'to' });
  const fields = {
    event: formField({ label: 'Event', input: event }),
    username: formField({ label: 'User', input: user, help: 'The exact user name.' }),
    success: formField({ label: 'Result', input: result }),
    from: formField({ label: 'From', input: from }),
    to: formField({ label: 'To', input: to, help: 'Includes the whole minute.' }),
  };
  for (const name of ['event', 'username', 'success']) fields[name].el.classList.add('filter-short');
  for (const name of ['from', 'to']) fields[name].el.classList.add('filter-time');
  const formError = h('p', { class: 'form-error', role: 'alert', hidden: true });
  const clearButton = h('button', { type: 'button', class: 'button button-secondary', text: 'Clear' });
  const applyButton = h('button', { type: 'submit', class: 'button button-primary', text: 'Apply' });
  const form = h(
    'form',
    { class: 'form audit-filters', novalidate: true, 'aria-labelledby': filtersId },
    h('h2', { class: 'card-title', id: filtersId, text: 'Filters' }),
    h('div', { class: 'field-grid audit-filter-grid' }, Object.values(fields).map((f) => f.el)),
    formError,
    h('div', { class: 'form-actions' }, clearButton, applyButton),
  );
  const refreshButton = h('button', { type: 'button', class: 'button button-secondary button-small', text: 'Refresh' });
  const csvButton = h('button', { type: 'button', class: 'button button-secondary button-small', text: 'Export CSV' });
  const jsonButton = h('button', { type: 'button', class: 'button button-secondary button-small', text: 'Export JSON' });
  const exportStatus = h('p', { class: 'muted export-status', role: 'status' });
  const body = h('div', { class: 'table-wrap' }, h('p', { class: 'muted', text: 'Loading the audit log…' }));
  const range = h('p', { class: 'pager-range', role: 'status' });
  const previous = h('button', { type: 'button', class: 'button button-secondary button-small', text: 'Previous' });
  const next = h('button', { type: 'button', class: 'button button-secondary button-small', text: 'Next' });
  const pageSize = h(
    'select',
    { name: 'page_size', class: 'input-narrow' },
    PAGE_SIZES.map((size) => h('option', { value: size, selected: size === DEFAULT_PAGE_SIZE, text: String(size) })),
  );
  const pageSizeField = formField({ label: 'Entries per page', input: pageSize });
  const heading = h('h2', { class: 'card-title', id: titleId, text: 'Audit Log' });
  const el = h(
    'div',
    { class: 'page' },
    h('div', { class: 'page-header' }, h('h1', { text: 'Audit' })),
    h('section', { class: 'card' }, form),
    h(
      'section',
      { class: 'card', 'aria-labelledby': titleId },
      h('div', { class: 'card-header' }, heading, h('div', { class: 'row-actions' }, refreshButton, csvButton, jsonButton)),
      exportStatus,
      body,
      h('div', { class: 'pager' }, range, h('div', { class: 'pager-controls' }, pageSizeField.el, previous, next)),
    ),
  );
  let applied = []; // query-filters of the filters last applied
  let offset = 0;
  let limit = DEFAULT_PAGE_SIZE;
  let total = null;
  let entries = null;
  let ticket = 0;
  let destroyed = false;
  let exporting = false;

  function clearErrors() {
    formError.hidden = true;
    formError.textContent = '';
    for (const f of Object.values(fields)) f.setError(null);
  }

  /** query-filters of the form, or null (errors shown) when the time range is wrong. */
  function readFilters() {
    const filters = [];
    if (event.value) filters.push(['event', '=', event.value]);
    const name = user.value.trim();
    if (name) filters.push(['username', '=', name]);
    if (result.value) filters.push(['success', '=', result.value === 'true']);
    const start = localMillis(from.value);
    const end = localMillis(to.value);
    if (from.value && start === null) fields.from.setError('Enter a date and time.');
    if (to.value && end === null) fields.to.setError('Enter a date and time.');
    if ((from.value && start === null) || (to.value && end === null)) return null;
    if (start !== null && end !== null && end < start) {
      fields.to.setError('Must not be before From.');
      return null;
    }
    if (start !== null) filters.push(['timestamp', '>=', { $date: start }]);
    // "To" names a minute: everything before the next one.
    if (end !== null) filters.push(['timestamp', '<', { $date: end + MINUTE_MS }]);
    return filters;
  }

  function query(options) {
    return app.rpc.call('audit.query', [{ 'query-filters': applied, 'query-options': options }]);
  }

  async function load() {
    ticket += 1;
    const mine = ticket;
    body.setAttribute('aria-busy', 'true');
    try {
      const [count, page] = await Promise.all([
        query({ count: true }),
        query({ order_by: NEWEST_FIRST, offset, limit }),
      ]);
      if (destroyed || mine !== ticket) return;
      total = count;
      entries = page;
      if (!entries.length && offset > 0 && total > 0) {
        // The page emptied (entries expired meanwhile): show the last one there is.
        offset = Math.max(0, Math.floor((total - 1) / limit) * limit);
        await load();
        return;
      }
      render();
    } catch (err) {
      if (destroyed || mine !== ticket) return;
      total = null;
      entries = null;
      showQueryError(err);
      render();
    } finally {
      if (mine === ticket) body.removeAttribute('aria-busy');
    }
  }

  function showQueryError(err) {
    if (err instanceof RpcError && err.code === -32602 && err.extra.length) {
      replace(body, h('p', { class: 'form-error', role: 'alert', text: sentence(err.extra.map(([a, m]) => `${fieldPath(a)}: ${m}`).join('; ')) }));
    } else {
      replace(body, h('p', { class: 'form-error', role: 'alert', text: describeError(err) }));
    }
  }

  function render() {
    const known = entries !== null && total !== null;
    previous.disabled = !known || offset === 0;
    next.disabled = !known || offset + entries.length >= total;
    csvButton.disabled = exporting || !known;
    jsonButton.disabled = exporting || !known;
    if (!known) {
      range.textContent = '';
      return;
    }
    range.textContent = total
      ? `Showing ${offset + 1}–${offset + entries.length} of ${total.toLocaleString()}`
      : 'No entries';
    if (!entries.length) {
      replace(
        body,
        h('p', { class: 'muted', text: applied.length ? 'No audit entries match these filters.' : 'The audit log is empty.' }),
      );
      return;
    }
    replace(
      body,
      stackedTable({
        caption: 'Audit entries',
        className: 'audit-table',
        columns: [
          { label: 'Time' },
          { label: 'User' },
          { label: 'Event' },
          { label: 'Description' },
          { label: 'Address' },
          { label: 'Result' },
        ],
        rows: entries.map((entry) => {
          const millis = wireMillis(entry.timestamp);
          const data = entry.event_data || {};
          const description = data.description || '—';
          // A method call's description usually names the method already.
          const method = data.method && !description.includes(data.method) ? data.method : null;
          return {
            attrs: { dataset: { auditId: entry.audit_id } },
            cells: [
              h('time', { datetime: new Date(millis).toISOString(), text: new Date(millis).toLocaleString() }),
              [
                h('span', { text: entry.username || '—' }),
                data.credentials ? h('span', { class: 'cell-note', text: credentialName(data.credentials) }) : null,
              ],
              [
                h('span', { text: EVENTS[entry.event] || entry.event }),
                method ? h('code', { class: 'cell-note', text: method }) : null,
              ],
              [
                h('span', { text: description }),
                data.error ? h('span', { class: 'cell-note cell-error', text: data.error }) : null,
              ],
              entry.address || '—',
              h('span', {
                class: entry.success ? 'badge badge-ok' : 'badge badge-bad',
                text: entry.success ? 'Succeeded' : 'Failed',
              }),
            ],
          };
        }),
      }),
    );
  }

  async function exportAs(kind) {
    if (exporting) return;
    exporting = true;
    render();
    const started = new Date();
    const seen = new Set();
    const rows = [];
    try {
      // Newest first, like the screen. An entry written meanwhile lands on top and pushes
      // the older ones down by one: read again, it is dropped by its audit_id, so no
      // entry of the snapshot is missed and none appears twice.
      for (let at = 0; ; at += EXPORT_CHUNK) {
        exportStatus.textContent = `Exporting… ${rows.length.toLocaleString()} entries so far.`;
        const chunk = await query({ order_by: NEWEST_FIRST, offset: at, limit: EXPORT_CHUNK });
        if (destroyed) return;
        for (const entry of chunk) {
          if (seen.has(entry.audit_id)) continue;
          seen.add(entry.audit_id);
          rows.push(entry);
        }
        if (chunk.length < EXPORT_CHUNK) break;
      }
      const name = `middlewared-2fa-audit-${fileStamp(started)}`;
      if (kind === 'csv') download(`${name}.csv`, auditCsv(rows), 'text/csv;charset=utf-8');
      else download(`${name}.json`, `${JSON.stringify(rows, null, 2)}\n`, 'application/json');
      exportStatus.textContent = `Exported ${rows.length.toLocaleString()} ${rows.length === 1 ? 'entry' : 'entries'} as ${kind.toUpperCase()}.`;
    } catch (err) {
      exportStatus.textContent = '';
      app.toast(`The export failed: ${describeError(err)}`, 'bad');
    } finally {
      exporting = false;
      if (!destroyed) render();
    }
  }

  form.addEventListener('submit', (submitted) => {
    submitted.preventDefault();
    clearErrors();
    const filters = readFilters();
    if (!filters) {
      const invalid = form.querySelector('[aria-invalid="true"]');
      if (invalid) invalid.focus();
      return;
    }
    applied = filters;
    offset = 0;
    exportStatus.textContent = '';
    load();
  });
  clearButton.addEventListener('click', () => {
    clearErrors();
    form.reset();
    applied = [];
    offset = 0;
    exportStatus.textContent = '';
    load();
  });
  refreshButton.addEventListener('click', () => load());
  csvButton.addEventListener('click', () => exportAs('csv'));
  jsonButton.addEventListener('click', () => exportAs('json'));
  // The pressed button keeps the focus, unless it is disabled on the first or last page.
  previous.addEventListener('click', async () => {
    offset = Math.max(0, offset - limit);
    await load();
    if (previous.disabled && !next.disabled) next.focus();
  });
  next.addEventListener('click', async () => {
    offset += limit;
    await load();
    if (next.disabled && !previous.disabled) previous.focus();
  });
  pageSize.addEventListener('change', () => {
    limit = Number(pageSize.value);
    offset = Math.floor(offset / limit) * limit;
    load();
  });

  return {
    el,
    mounted: () => load(),
    destroy() {
      destroyed = true;
    },
  };
}
