// A menu button (WAI-ARIA menu button pattern): Enter/Space/ArrowDown open it and focus
// the first item, arrows move, Escape closes and returns focus to the button, a click
// elsewhere or leaving it with Tab closes it.

import { h, uid } from './dom.js';

/**
 * items: [{label, href?, run?: () => void, hidden?: boolean}]
 * Returns {el, setItems(items)}.
 */
export function menuButton({ label, className, items }) {
  const menuId = uid('menu');
  const button = h('button', {
    type: 'button',
    class: `toolbar-button ${className || ''}`.trim(),
    'aria-haspopup': 'menu',
    'aria-expanded': 'false',
    'aria-controls': menuId,
  });
  button.append(h('span', { class: 'toolbar-button-label', text: label }), h('span', { class: 'caret', 'aria-hidden': 'true' }));
  const menu = h('div', { class: 'menu', role: 'menu', id: menuId, 'aria-label': label, hidden: true });
  const wrapper = h('div', { class: 'menu-wrapper' }, button, menu);

  function itemsEls() {
    return [...menu.querySelectorAll('[role="menuitem"]')];
  }

  function open(focusIndex = 0) {
    menu.hidden = false;
    button.setAttribute('aria-expanded', 'true');
    const els = itemsEls();
    if (els.length) els[Math.max(0, Math.min(focusIndex, els.length - 1))].focus();
  }

  function close(returnFocus) {
    if (menu.hidden) return;
    menu.hidden = true;
    button.setAttribute('aria-expanded', 'false');
    if (returnFocus) button.focus();
  }

  button.addEventListener('click', () => (menu.hidden ? open(0) : close(false)));
  button.addEventListener('keydown', (event) => {
    if (event.key === 'ArrowDown') {
      event.preventDefault();
      open(0);
    } else if (event.key === 'ArrowUp') {
      event.preventDefault();
      open(itemsEls().length - 1);
    }
  });
  menu.addEventListener('keydown', (event) => {
    const els = itemsEls();
    const index = els.indexOf(document.activeElement);
    if (event.key === 'Escape') {
      event.preventDefault();
      close(true);
    } else if (event.key === 'ArrowDown') {
      event.preventDefault();
      els[(index + 1) % els.length].focus();
    } else if (event.key === 'ArrowUp') {
      event.preventDefault();
      els[(index - 1 + els.length) % els.length].focus();
    } else if (event.key === 'Home') {
      event.preventDefault();
      els[0].focus();
    } else if (event.key === 'End') {
      event.preventDefault();
      els[els.length - 1].focus();
    } else if (event.key === 'Tab') {
      close(false);
    }
  });
  wrapper.addEventListener('focusout', (event) => {
    if (!wrapper.contains(event.relatedTarget)) close(false);
  });
  document.addEventListener('click', (event) => {
    if (!wrapper.contains(event.target)) close(false);
  });

  function setItems(list) {
    menu.replaceChildren(
      ...list
        .filter((item) => !item.hidden)
        .map((item) => {
          const el = item.href
            ? h('a', { role: 'menuitem', class: 'menu-item', href: item.href, tabindex: '-1', text: item.label })
            : h('button', { type: 'button', role: 'menuitem', class: 'menu-item', tabindex: '-1', text: item.label });
          el.addEventListener('click', () => {
            close(false);
            if (item.run) item.run();
          });
          el.addEventListener('keydown', (event) => {
            if (event.key === ' ' && item.href) {
              event.preventDefault();
              el.click();
            }
          });
          return el;
        }),
    );
  }

  setItems(items || []);
  return { el: wrapper, button, setItems, close };
}
