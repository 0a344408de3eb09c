// Small DOM helpers. Everything is built with createElement and textContent: no HTML
// strings, so nothing the server or a user sends can become markup, and no inline
// style or handler attributes (the daemon's Content-Security-Policy forbids them).

let lastId = 0;

/** A document-unique id with a readable prefix, for label/aria wiring. */
export function uid(prefix) {
  lastId += 1;
  return `${prefix}-${lastId}`;
}

/**
 * Create an element.
 *
 * props: `class`, `text` (textContent), `on<event>` functions, `dataset` (object),
 * `true` for boolean attributes; other values become attributes. null, undefined and
 * false are skipped. children: nodes, strings, or (nested) arrays of them.
 */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') el.className = value;
    else if (key === 'text') el.textContent = value;
    else if (key === 'dataset') Object.assign(el.dataset, value);
    else if (key.startsWith('on') && typeof value === 'function') {
      el.addEventListener(key.slice(2), value);
    } else if (value === true) el.setAttribute(key, '');
    else el.setAttribute(key, String(value));
  }
  append(el, children);
  return el;
}

/** Append nodes/strings (arrays are flattened, null/false skipped). */
export function append(el, children) {
  for (const child of [children].flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

/** Replace the children of `el`. */
export function replace(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

/** Show or hide with the `hidden` attribute. */
export function show(el, visible) {
  el.hidden = !visible;
}

/** Focus `el` without scrolling the page when it is already in view. */
export function focus(el) {
  if (el && typeof el.focus === 'function') el.focus({ preventScroll: false });
}

/** The first focusable descendant of `root` (or null). */
export function firstFocusable(root) {
  return root.querySelector(
    'input:not([disabled]):not([type="hidden"]), select:not([disabled]), ' +
      'textarea:not([disabled]), button:not([disabled]), a[href], [tabindex]:not([tabindex="-1"])',
  );
}
