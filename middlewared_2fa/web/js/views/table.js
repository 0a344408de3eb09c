// A data table that stays readable on a phone: below 40rem wide each row becomes a small
// card in which every cell is preceded by its column name (the `data-label` attribute,
// shown by the stylesheet). The table keeps explicit ARIA roles, since browsers may drop
// table semantics from elements whose CSS display is changed.

import { h } from '../dom.js';

/**
 * columns: [{label, className?}]; rows: [{attrs?, cells: [nodes or text per column]}].
 * The first cell of each row is its header (<th scope="row">), so a screen reader names
 * the row by it. caption: optional accessible name of the table.
 */
export function stackedTable({ columns, rows, caption, className }) {
  return h(
    'table',
    { class: `table table-stacked ${className || ''}`.trim(), role: 'table', 'aria-label': caption || null },
    h(
      'thead',
      { role: 'rowgroup' },
      h(
        'tr',
        { role: 'row' },
        columns.map((column) => h('th', { scope: 'col', role: 'columnheader', class: column.className || null, text: column.label })),
      ),
    ),
    h(
      'tbody',
      { role: 'rowgroup' },
      rows.map((row) =>
        h(
          'tr',
          { role: 'row', ...(row.attrs || {}) },
          row.cells.map((content, index) => {
            const column = columns[index];
            const props = {
              'data-label': column.label,
              class: column.className || null,
            };
            // One element per cell, so that a stacked cell is two grid items: name, value.
            const empty = [content].flat(Infinity).every((part) => part === null || part === undefined || part === '');
            const value = empty ? null : h('div', { class: 'cell-value' }, content);
            return index === 0
              ? h('th', { scope: 'row', role: 'rowheader', ...props }, value)
              : h('td', { role: 'cell', ...props }, value);
          }),
        ),
      ),
    ),
  );
}
