// The application shell: the session (login, re-login token, logout), the data every
// screen shares, live updates, the toolbar and the hash router.
//
// Session rules (API.md §3): the password is only ever sent in auth.login_ex and never
// stored; after each login the page asks auth.generate_token for a re-login token and
// keeps it in sessionStorage, so a reload (or a dropped connection) logs in again with
// TOKEN_PLAIN. Logging out deletes it; a session the server ended (close 1008, API.md §9)
// goes back to the login screen.
//
// A setup-only session (account_attributes SETUP_ONLY, API.md §4, §10) may call nothing but
// its own enrolment: it gets the setup screen only (no menus, no shared data, no token,
// since every other call would answer EACCES) until a confirmed secret makes it a full
// session, which then continues as after any login.

import { h, replace } from './dom.js';
import { openDialog } from './dialog.js';
import { describeError } from './errors.js';
import { clockTime, hasRole } from './format.js';
import { menuButton } from './menu.js';
import { ConnectionLost, RpcClient, RpcError, apiUrl } from './rpc.js';
import { advancedView } from './views/advanced.js';
import { apiKeysView } from './views/api-keys.js';
import { auditView } from './views/audit.js';
import { loginView } from './views/login.js';
import { sessionsView } from './views/sessions.js';
import { showSetupPrompt } from './views/setup-prompt.js';
import { setupView } from './views/setup.js';
import { timeView } from './views/time.js';
import { twoFactorView } from './views/twofactor.js';
import { usersView } from './views/users.js';

const TOKEN_KEY = 'middlewared-2fa.token';
const SKIPPED_KEY = 'middlewared-2fa.setup-skipped';
const TOKEN_TTL = 600; // seconds
const TOKEN_REFRESH_MS = 240000; // well inside the TTL
const ME_POLL_MS = 60000;
/** WebSocket close code of a session the server ended (API.md §9). */
const SESSION_ENDED = 1008;
const RECONNECT_DELAYS_MS = [500, 1000, 2000, 4000, 8000, 15000];

export const ROUTES = {
  'two-factor': { title: 'Two-Factor Authentication', view: twoFactorView },
  advanced: { title: 'Advanced Settings', view: advancedView, allowed: (app) => app.canWriteSecurity },
  // Everyone: without ACCOUNT_READ user.query answers the own entry only (API.md §5).
  users: { title: 'Users', view: usersView },
  'api-keys': { title: 'API Keys', view: apiKeysView },
  sessions: { title: 'Sessions', view: sessionsView },
  time: { title: 'Time', view: timeView, allowed: (app) => app.canReadSecurity },
  audit: { title: 'Audit', view: auditView, allowed: (app) => app.canReadAudit },
};

class App {
  constructor() {
    this.rpc = new RpcClient(apiUrl());
    this.main = document.getElementById('main');
    this.toolbar = document.getElementById('toolbar');
    this.banner = document.getElementById('banner');
    this.toasts = document.getElementById('toasts');
    this.me = null; // auth.me result
    this.global = null; // auth.twofactor.config (readers only)
    this.timeSync = null; // system.time_sync.status
    this.timeSyncError = null;
    this.alerts = new Map(); // uuid -> alert
    this.view = null;
    // A staged enrolment waiting for its code (views/enrolment.js), in memory only.
    this.enrolment = null;
    // Offer recovery codes on the Two-Factor Authentication screen (after a new secret).
    this.offerRecovery = false;
    this.refreshTimer = null;
    this.pollTimer = null;
    this.reconnecting = false;
    this.rpc.addEventListener('collection_update', (event) => this.onCollectionUpdate(event.detail));
    this.rpc.addEventListener('lost', (event) => this.onConnectionLost(event.detail.code));
    window.addEventListener('hashchange', () => this.route());
    // Which control the user used last (see toast()).
    const remember = (event) => {
      const control = event.target instanceof Element ? event.target.closest('button, a, input, select, textarea') : null;
      if (control) this.lastControl = control;
    };
    document.addEventListener('pointerdown', remember, true);
    document.addEventListener('keydown', remember, true);
    document.addEventListener('visibilitychange', () => {
      if (document.visibilityState === 'visible' && this.me) this.refreshAll();
    });
  }

  // -- roles -------------------------------------------------------------------------

  get roles() {
    return (this.me && this.me.roles) || [];
  }

  get canReadSecurity() {
    return hasRole(this.roles, 'SYSTEM_SECURITY_READ');
  }

  get canWriteSecurity() {
    return hasRole(this.roles, 'SYSTEM_SECURITY_WRITE');
  }

  get canReadAccounts() {
    return hasRole(this.roles, 'ACCOUNT_READ');
  }

  get canWriteAccounts() {
    return hasRole(this.roles, 'ACCOUNT_WRITE');
  }

  get isFullAdmin() {
    return this.roles.includes('FULL_ADMIN');
  }

  get canReadApiKeys() {
    return hasRole(this.roles, 'API_KEY_READ');
  }

  get canWriteApiKeys() {
    return hasRole(this.roles, 'API_KEY_WRITE');
  }

  get canReadAudit() {
    return hasRole(this.roles, 'SYSTEM_AUDIT_READ');
  }

  /** Sees every session in auth.sessions (else only its own user's, API.md §9). */
  get canReadSessions() {
    return hasRole(this.roles, 'AUTH_SESSIONS_READ');
  }

  /** May end other users' sessions (within the role guard, API.md §9). */
  get canWriteSessions() {
    return hasRole(this.roles, 'AUTH_SESSIONS_WRITE');
  }

  /** The session may only set up two-factor authentication (API.md §4). */
  get setupOnly() {
    return Boolean(this.me) && (this.me.account_attributes || []).includes('SETUP_ONLY');
  }

  get username() {
    return this.me ? this.me.pw_name : null;
  }

  // -- start, login, logout ----------------------------------------------------------

  async boot() {
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) {
      this.main.replaceChildren(h('p', { class: 'boot', text: 'Restoring your session…' }));
      sessionStorage.removeItem(TOKEN_KEY); // single use
      try {
        const reply = await this.rpc.call('auth.login_ex', [{ mechanism: 'TOKEN_PLAIN', token }]);
        if (reply.response_type === 'SUCCESS') {
          await this.enter(reply.user_info, { fresh: false });
          return;
        }
        this.showLogin('Your session has ended. Log in again.');
        return;
      } catch (err) {
        this.showLogin(describeError(err));
        return;
      }
    }
    this.showLogin();
  }

  showLogin(notice) {
    this.leave();
    this.setView(loginView(this, { notice }));
    document.title = 'Log In · middlewared-2fa';
  }

  /** Logged in (password, password + code, or token): load everything and show the UI. */
  async enter(userInfo, { fresh }) {
    this.me = userInfo || (await this.rpc.call('auth.me'));
    if (fresh) sessionStorage.removeItem(SKIPPED_KEY); // the setup prompt returns at each login
    if (this.setupOnly) {
      this.enterSetup();
      return;
    }
    await this.startSession();
    this.maybePromptSetup();
  }

  /** The full session: re-login token, toolbar, shared data, live updates, the screen. */
  async startSession() {
    await this.saveToken();
    clearInterval(this.refreshTimer);
    this.refreshTimer = setInterval(() => this.saveToken(), TOKEN_REFRESH_MS);
    this.buildToolbar();
    await this.loadShared();
    await this.subscribe();
    this.route({ quiet: true });
  }

  /** A setup-only session: the setup screen and Log Out, nothing else. */
  enterSetup() {
    this.buildToolbar();
    this.setView(setupView(this));
    document.title = 'Set Up Two-Factor Authentication · middlewared-2fa';
  }

  /**
   * The setup screen confirmed a secret, or registered a passkey (`passkey`): the session
   * is a full one now (API.md §4, §12).
   */
  async finishSetup({ passkey = false } = {}) {
    await this.refreshMe();
    if (this.setupOnly) return; // not upgraded (changed meanwhile): the setup screen stays
    this.offerRecovery = true;
    const asks = passkey ? 'your passkey' : 'a code from your app';
    this.toast(
      this.me.two_factor_config.global_enabled
        ? `Two-factor authentication is set up. From now on, logging in asks for ${asks}.`
        : 'Two-factor authentication is set up.',
      'ok',
    );
    window.history.replaceState(null, '', '#/two-factor');
    await this.startSession();
    if (this.view && this.view.focusOffer) this.view.focusOffer();
  }

  async saveToken() {
    try {
      const token = await this.rpc.call('auth.generate_token', [TOKEN_TTL]);
      sessionStorage.setItem(TOKEN_KEY, token);
    } catch (err) {
      // Without a token a reload asks for the password again; nothing else breaks.
    }
  }

  /** Log out: end the session on the server, close the socket, forget the token. */
  async logout() {
    try {
      await this.rpc.call('auth.logout');
    } catch (err) {
      // The socket is closed below anyway, which ends the session too.
    }
    this.rpc.close();
    sessionStorage.removeItem(TOKEN_KEY);
    sessionStorage.removeItem(SKIPPED_KEY);
    // The next person to log in starts on the Two-Factor Authentication screen.
    window.history.replaceState(null, '', window.location.pathname + window.location.search);
    this.showLogin('You have logged out.');
  }

  /** Forget the logged-in state (before showing the login screen). */
  leave() {
    clearInterval(this.refreshTimer);
    clearInterval(this.pollTimer);
    this.refreshTimer = null;
    this.pollTimer = null;
    this.me = null;
    this.enrolment = null;
    this.offerRecovery = false;
    this.global = null;
    this.timeSync = null;
    this.timeSyncError = null;
    this.alerts.clear();
    this.toolbar.hidden = true;
    this.hideBanner();
    for (const dialog of document.querySelectorAll('dialog[open]')) dialog.close();
  }

  // -- shared data and live updates --------------------------------------------------

  async loadShared() {
    const jobs = [];
    if (this.canReadSecurity) {
      jobs.push(
        this.rpc.call('auth.twofactor.config').then((config) => {
          this.global = config;
        }),
        this.rpc.call('alert.list').then((alerts) => {
          this.alerts = new Map(alerts.map((a) => [a.uuid, a]));
        }),
      );
    }
    await Promise.allSettled(jobs);
    this.loadTimeSync(); // may wait for NTP servers: not awaited
  }

  async loadTimeSync({ check = false } = {}) {
    try {
      this.timeSync = await this.rpc.call(check ? 'system.time_sync.check' : 'system.time_sync.status');
      this.timeSyncError = null;
    } catch (err) {
      if (check) throw err;
      this.timeSyncError = describeError(err);
    }
    this.changed();
    return this.timeSync;
  }

  /**
   * Subscribe to live updates (API.md §7). Every session may follow its own user.query
   * entry and its own user's auth.sessions (all of them with AUTH_SESSIONS_READ);
   * auth.twofactor.config and alert.list need SYSTEM_SECURITY_READ and answer
   * EACCES otherwise, which is expected and ignored. Users who cannot follow the global
   * settings learn about changes to them from auth.me, re-read once a minute.
   */
  async subscribe() {
    const names = ['user.query', 'auth.twofactor.config', 'alert.list', 'auth.sessions'];
    const results = await Promise.allSettled(names.map((name) => this.rpc.call('core.subscribe', [name])));
    let followsGlobal = false;
    let failed = false;
    results.forEach((result, index) => {
      if (result.status === 'fulfilled') {
        if (names[index] === 'auth.twofactor.config') followsGlobal = true;
      } else if (!(result.reason instanceof RpcError && result.reason.errname === 'EACCES')) {
        failed = true;
      }
    });
    if (failed) this.toast('Live updates are not available; reload the page to see changes.', 'warn');
    clearInterval(this.pollTimer);
    this.pollTimer = followsGlobal
      ? null
      : setInterval(() => {
          if (document.visibilityState === 'visible') this.refreshMe();
        }, ME_POLL_MS);
  }

  onCollectionUpdate(detail) {
    const { collection, msg, id, fields } = detail;
    if (!this.me) return;
    if (this.view && this.view.onCollectionUpdate) this.view.onCollectionUpdate(detail);
    if (collection === 'user.query') {
      if (fields && fields.username === this.username) {
        if (msg === 'removed') {
          this.logout();
          return;
        }
        this.refreshMe();
      }
    } else if (collection === 'auth.twofactor.config') {
      this.global = fields;
      this.refreshMe();
    } else if (collection === 'alert.list') {
      if (msg === 'removed') this.alerts.delete(id);
      else this.alerts.set(id, fields);
      if (fields && /^TimeS/.test(fields.klass || '')) this.loadTimeSync();
      this.changed();
    }
  }

  async refreshMe({ renewToken = false } = {}) {
    try {
      this.me = await this.rpc.call('auth.me');
    } catch (err) {
      return;
    }
    // A change of the secret ends every re-login token of the user (API.md §9): keep
    // one that matches the session as it is now.
    if (renewToken && !this.setupOnly) await this.saveToken();
    this.changed();
  }

  async refreshAll() {
    await this.refreshMe();
    if (this.setupOnly) return; // nothing else may be read yet
    if (this.canReadSecurity) {
      try {
        this.global = await this.rpc.call('auth.twofactor.config');
      } catch (err) {
        // shown as stale; the next event refreshes it
      }
    }
    this.loadTimeSync();
  }

  /** Re-render what depends on shared data. */
  changed() {
    if (this.view && this.view.update) this.view.update();
    this.updateToolbar();
  }

  // -- setup prompt --------------------------------------------------------------------

  maybePromptSetup() {
    const config = this.me.two_factor_config;
    if (this.setupOnly) return;
    if (!config.setup_required || sessionStorage.getItem(SKIPPED_KEY) === this.username) return;
    showSetupPrompt(this).then((choice) => {
      if (choice === 'setup') {
        this.navigate('two-factor');
        if (this.view && this.view.configure) this.view.configure();
      } else if (choice === 'passkey') {
        this.navigate('two-factor');
        if (this.view && this.view.addPasskey) this.view.addPasskey();
      } else if (choice === 'skip') {
        sessionStorage.setItem(SKIPPED_KEY, this.username);
        this.toast('Two-factor setup skipped. You will be asked again at your next login.');
      }
    });
  }

  // -- connection loss -----------------------------------------------------------------

  async onConnectionLost(code) {
    if (!this.me || this.reconnecting) return;
    if (code === SESSION_ENDED) {
      // The server ended this session (API.md §9): its tokens ended with it.
      sessionStorage.removeItem(TOKEN_KEY);
      this.showLogin(
        'Your session was ended: your password, two-factor secret, passkeys or roles changed, or it ' +
          'was ended from another session. Log in again.',
      );
      return;
    }
    this.reconnecting = true;
    this.showBanner('The connection to the server was lost. Reconnecting…');
    const token = sessionStorage.getItem(TOKEN_KEY);
    for (let attempt = 0; this.me; attempt += 1) {
      await new Promise((resolve) => {
        setTimeout(resolve, RECONNECT_DELAYS_MS[Math.min(attempt, RECONNECT_DELAYS_MS.length - 1)]);
      });
      try {
        await this.rpc.open();
      } catch (err) {
        continue;
      }
      this.reconnecting = false;
      try {
        sessionStorage.removeItem(TOKEN_KEY);
        const reply = token
          ? await this.rpc.call('auth.login_ex', [{ mechanism: 'TOKEN_PLAIN', token }])
          : { response_type: 'AUTH_ERR' };
        if (reply.response_type !== 'SUCCESS') {
          this.showLogin('Your session has ended (the server may have restarted). Log in again.');
          return;
        }
        this.me = reply.user_info;
        await this.saveToken();
        await this.loadShared();
        await this.subscribe();
        this.hideBanner();
        this.changed();
      } catch (err) {
        if (err instanceof ConnectionLost) return; // a new `lost` event starts over
        this.showLogin(describeError(err));
      }
      return;
    }
    this.reconnecting = false;
  }

  showBanner(text) {
    this.banner.textContent = text;
    this.banner.hidden = false;
  }

  hideBanner() {
    this.banner.hidden = true;
    this.banner.textContent = '';
  }

  // -- toolbar -----------------------------------------------------------------------

  buildToolbar() {
    const nav = this.toolbar.querySelector('.toolbar-actions');
    this.alertsButton = h('button', {
      type: 'button',
      class: 'toolbar-button alerts-button',
      onclick: () => this.showAlerts(),
    });
    this.settingsMenu = menuButton({ label: 'Settings', className: 'settings-menu', items: [] });
    this.systemMenu = menuButton({ label: 'System', className: 'system-menu', items: [] });
    this.userMenu = menuButton({ label: this.username, className: 'user-menu', items: [] });
    this.userMenu.setItems([{ label: 'Log Out', run: () => this.logout() }]);
    replace(nav, this.alertsButton, this.settingsMenu.el, this.systemMenu.el, this.userMenu.el);
    this.toolbar.hidden = false;
    this.updateToolbar();
  }

  updateToolbar() {
    if (!this.me || !this.settingsMenu) return;
    this.settingsMenu.setItems([
      { label: 'Two-Factor Authentication', href: '#/two-factor' },
      { label: 'Sessions', href: '#/sessions' },
      { label: 'Users', href: '#/users' },
      { label: 'API Keys', href: '#/api-keys' },
      { label: 'Advanced Settings', href: '#/advanced', hidden: !this.canWriteSecurity },
    ]);
    const systemItems = [
      { label: 'Time', href: '#/time', hidden: !this.canReadSecurity },
      { label: 'Audit', href: '#/audit', hidden: !this.canReadAudit },
    ];
    this.systemMenu.setItems(systemItems);
    // A setup-only session may open no screen but the setup: only Log Out is offered.
    this.settingsMenu.el.hidden = this.setupOnly;
    this.systemMenu.el.hidden = this.setupOnly || systemItems.every((item) => item.hidden);
    this.alertsButton.hidden = !this.canReadSecurity || this.setupOnly;
    const count = this.alerts.size;
    const levels = new Set([...this.alerts.values()].map((a) => a.level));
    const tone = levels.has('CRITICAL') || levels.has('ERROR') ? 'badge-bad' : levels.has('WARNING') ? 'badge-warn' : '';
    replace(
      this.alertsButton,
      h('span', { class: 'toolbar-button-label', text: 'Alerts' }),
      count ? h('span', { class: `badge ${tone}`.trim(), text: String(count) }) : null,
    );
    this.alertsButton.setAttribute('aria-label', count ? `Alerts: ${count}` : 'Alerts: none');
  }

  showAlerts() {
    const alerts = [...this.alerts.values()].sort((a, b) => a.datetime - b.datetime);
    // An unverifiable clock is fixed on System > Time, by those who may change NTP servers.
    const timeLink = (alert, ctx) =>
      alert.klass === 'TimeSyncUnverified' && this.canWriteSecurity
        ? h('a', {
            class: 'alert-link',
            href: '#/time',
            text: 'Set up NTP servers in System → Time',
            onclick: (event) => {
              event.preventDefault();
              ctx.close('time');
            },
          })
        : null;
    openDialog({
      title: 'Alerts',
      wide: true,
      body: (ctx) =>
        alerts.length
          ? h(
              'ul',
              { class: 'alert-list' },
              alerts.map((alert) =>
                h(
                  'li',
                  { class: `alert-item alert-${String(alert.level).toLowerCase()}` },
                  h('span', { class: 'alert-level', text: alert.level }),
                  h('p', { class: 'alert-text', text: alert.formatted }),
                  timeLink(alert, ctx),
                  h('span', { class: 'alert-time', text: clockTime(alert.datetime) }),
                ),
              ),
            )
          : h('p', { text: 'There are no alerts.' }),
      actions: [{ label: 'Close', kind: 'primary', value: null }],
    }).then((choice) => {
      if (choice === 'time') this.navigate('time');
    });
  }

  // -- views -------------------------------------------------------------------------

  setView(view) {
    if (this.view && this.view.destroy) this.view.destroy();
    this.view = view;
    replace(this.main, view.el);
    const heading = view.el.querySelector('h1');
    if (heading) {
      heading.setAttribute('tabindex', '-1');
      if (view.focusHeading !== false) heading.focus({ preventScroll: true });
    }
    if (view.mounted) view.mounted();
  }

  /** Show screen `name` now (the hashchange that follows finds it shown). */
  navigate(name) {
    if (window.location.hash !== `#/${name}`) window.location.hash = `#/${name}`;
    this.route();
  }

  /** Show the screen named by the URL; quiet: no message when it is not allowed. */
  route({ quiet = false } = {}) {
    if (!this.me || this.setupOnly) return;
    const name = window.location.hash.replace(/^#\//, '');
    let route = ROUTES[name];
    let refused = false;
    if (!route || (route.allowed && !route.allowed(this))) {
      refused = Boolean(route) && !quiet;
      window.history.replaceState(null, '', '#/two-factor');
      route = ROUTES['two-factor'];
    }
    if (this.view && this.view.route === route) {
      if (refused) this.toast('You are not allowed to open that screen.', 'warn');
      return;
    }
    if (!quiet) {
      // The user moves to another screen: messages about the one left go with it.
      this.toasts.replaceChildren();
      this.fitToasts();
    }
    const view = route.view(this);
    view.route = route;
    this.setView(view);
    document.title = `${route.title} · middlewared-2fa`;
    if (refused) this.toast('You are not allowed to open that screen.', 'warn');
  }

  /**
   * A short message at the bottom of the window for 7 s (a click dismisses it). It never
   * hides what it reports on: the page gets room below its content for the messages, and
   * the focused control (the one just used) is scrolled above them when they would cover
   * it. A message belongs to its screen: showing another screen removes it.
   */
  toast(text, tone = 'info') {
    const el = h('div', { class: `toast toast-${tone}`, role: tone === 'bad' ? 'alert' : null, text });
    const remove = () => {
      el.remove();
      this.fitToasts();
    };
    el.addEventListener('click', remove);
    this.toasts.append(el);
    this.fitToasts();
    // The control just used: the focused one, or the one last pressed (a button being
    // disabled while its call runs loses the focus).
    const used = [document.activeElement, this.lastControl].find(
      (el) => el && el !== document.body && el.isConnected && !el.closest('[role="dialog"]'),
    );
    if (used) {
      const overlap = used.getBoundingClientRect().bottom - this.toasts.getBoundingClientRect().top + 12;
      if (overlap > 0) window.scrollBy({ top: overlap });
    }
    setTimeout(remove, 7000);
  }

  /** Room below the screen's content for the messages shown (none: the stylesheet's). */
  fitToasts() {
    this.main.style.paddingBottom = this.toasts.childElementCount ? `${this.toasts.offsetHeight + 32}px` : '';
  }
}

const app = new App();
app.boot();
