// Labelled form fields with help text and an error slot wired through aria-describedby.

import { h, uid } from './dom.js';

/**
 * A field: <label> + control + help + error. For checkboxes the label follows the box.
 * Returns {el, input, setError(text|null), help}.
 */
export function formField({ label, input, help, inline }) {
  const id = uid('field');
  input.id = id;
  const helpEl = help ? h('p', { class: 'field-help', id: `${id}-help` }, help) : null;
  const errorEl = h('p', { class: 'field-error', id: `${id}-error`, hidden: true });
  const describedBy = () =>
    [helpEl && helpEl.id, !errorEl.hidden && errorEl.id].filter(Boolean).join(' ');
  const labelEl = h('label', { class: inline ? 'check-label' : 'field-label', for: id, text: label });
  const el = inline
    ? h('div', { class: 'field field-check' }, h('div', { class: 'check-row' }, input, labelEl), helpEl, errorEl)
    : h('div', { class: 'field' }, labelEl, input, helpEl, errorEl);
  function sync() {
    const value = describedBy();
    if (value) input.setAttribute('aria-describedby', value);
    else input.removeAttribute('aria-describedby');
  }
  sync();
  return {
    el,
    input,
    help: helpEl,
    setError(text) {
      errorEl.textContent = text || '';
      errorEl.hidden = !text;
      if (text) input.setAttribute('aria-invalid', 'true');
      else input.removeAttribute('aria-invalid');
      el.classList.toggle('field-invalid', Boolean(text));
      sync();
    },
  };
}
