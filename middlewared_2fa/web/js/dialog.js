// Modal dialogs on the native <dialog> element: showModal() makes the rest of the page
// inert and keeps Tab inside; Escape cancels (unless an action is running); focus goes
// to the first field (or the given element) and back to the opener on close.

import { append, firstFocusable, h, replace, uid } from './dom.js';
import { describeError } from './errors.js';

/**
 * Open a dialog and resolve with the value of the action that closed it (null when
 * cancelled with Escape or a cancel action).
 *
 * options:
 *   title: heading text.
 *   body: (ctx) => nodes; ctx = {dialog, close(value), setError(text|content|null)}.
 *   actions: [{label, value, kind: 'primary'|'danger'|'secondary', run?: async (ctx) => value}]
 *     `run` may throw: the error is shown in the dialog and it stays open; its return
 *     value (unless undefined) becomes the dialog's value.
 *   initialFocus: (dialog) => element to focus first.
 *   onCancel: (ctx) => boolean; return false to keep the dialog open on Escape.
 *   wide: a wider dialog.
 *   labelPrefix: prefix of generated ids.
 */
export function openDialog(options) {
  const opener = document.activeElement;
  const titleId = uid('dialog-title');
  const errorBox = h('p', { class: 'form-error', role: 'alert', hidden: true });
  const dialog = h('dialog', {
    class: options.wide ? 'dialog dialog-wide' : 'dialog',
    'aria-labelledby': titleId,
  });
  let busy = false;
  let closingValue = null;
  let settle;
  const result = new Promise((resolve) => {
    settle = resolve;
  });

  const ctx = {
    dialog,
    close(value = null) {
      closingValue = value;
      if (dialog.open) dialog.close();
    },
    /** text: a string, or content for append() (e.g. words with a link); null clears. */
    setError(text) {
      errorBox.replaceChildren();
      if (text) append(errorBox, text);
      errorBox.hidden = !text;
    },
    setBusy(value) {
      busy = value;
      for (const button of dialog.querySelectorAll('.dialog-actions button')) {
        button.disabled = value;
      }
      dialog.setAttribute('aria-busy', value ? 'true' : 'false');
    },
    /** Replace the body and actions (multi-step dialogs). */
    render(step) {
      build(step);
    },
  };

  function build(step) {
    const title = h('h2', { class: 'dialog-title', id: titleId, text: step.title });
    const content = h('div', { class: 'dialog-body' }, step.body ? step.body(ctx) : []);
    const actions = h(
      'div',
      { class: 'dialog-actions' },
      (step.actions || []).map((action) =>
        h('button', {
          type: 'button',
          class: `button button-${action.kind || 'secondary'}`,
          text: action.label,
          onclick: () => runAction(action),
        }),
      ),
    );
    ctx.setError(null);
    replace(dialog, title, content, errorBox, actions);
    currentStep = step;
    const target = (step.initialFocus && step.initialFocus(dialog)) || firstFocusable(content) ||
      actions.querySelector('.button-primary, .button-danger') || firstFocusable(actions);
    if (target) target.focus();
  }

  let currentStep = options;

  async function runAction(action) {
    if (busy) return;
    if (!action.run) {
      ctx.close(action.value ?? null);
      return;
    }
    ctx.setError(null);
    ctx.setBusy(true);
    try {
      const value = await action.run(ctx);
      if (value !== undefined) ctx.close(value);
    } catch (err) {
      ctx.setError(describeError(err));
    } finally {
      if (dialog.open) ctx.setBusy(false);
    }
  }

  dialog.addEventListener('cancel', (event) => {
    event.preventDefault();
    if (busy) return;
    const handler = currentStep.onCancel || options.onCancel;
    if (handler && handler(ctx) === false) return;
    ctx.close(null);
  });
  // The promise settles after the dialog is gone and focus is back on the opener, so
  // a caller may open the next dialog right away.
  dialog.addEventListener('close', () => {
    dialog.remove();
    if (opener && opener.isConnected && typeof opener.focus === 'function') opener.focus();
    settle(closingValue);
  });
  // Enter in a text field runs the primary action, as in a form.
  dialog.addEventListener('keydown', (event) => {
    if (event.key !== 'Enter' || event.target.tagName !== 'INPUT') return;
    if (['checkbox', 'radio', 'button', 'submit'].includes(event.target.type)) return;
    const primary = (currentStep.actions || []).find((a) => a.kind === 'primary');
    if (primary) {
      event.preventDefault();
      runAction(primary);
    }
  });

  document.body.append(dialog);
  dialog.showModal();
  build(options);
  return result;
}

/** A yes/no confirmation. Resolves true when confirmed. */
export async function confirmDialog({ title, paragraphs, confirmLabel, cancelLabel, danger }) {
  const value = await openDialog({
    title,
    body: () => paragraphs.map((text) => (text instanceof Node ? text : h('p', { text }))),
    actions: [
      { label: cancelLabel || 'Cancel', value: false, kind: 'secondary' },
      { label: confirmLabel, value: true, kind: danger ? 'danger' : 'primary' },
    ],
    initialFocus: (dialog) => dialog.querySelector('.button-secondary'),
  });
  return value === true;
}
