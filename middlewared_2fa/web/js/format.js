// Formatting shared by the screens: roles, clock status, TOTP parameters.

/** Roles that `roles` grant, as the daemon expands them (API.md §3). */
export function grantedRoles(roles) {
  const includes = {
    READONLY_ADMIN: [
      'ACCOUNT_READ',
      'SYSTEM_SECURITY_READ',
      'SYSTEM_AUDIT_READ',
      'AUTH_SESSIONS_READ',
      'API_KEY_READ',
    ],
    ACCOUNT_WRITE: ['ACCOUNT_READ'],
    SYSTEM_SECURITY_WRITE: ['SYSTEM_SECURITY_READ'],
    AUTH_SESSIONS_WRITE: ['AUTH_SESSIONS_READ'],
    API_KEY_WRITE: ['API_KEY_READ'],
  };
  const granted = new Set();
  const todo = [...(roles || [])];
  while (todo.length) {
    const role = todo.pop();
    if (granted.has(role)) continue;
    granted.add(role);
    todo.push(...(includes[role] || []));
  }
  return granted;
}

/** True when `roles` satisfy `role` (FULL_ADMIN satisfies everything). */
export function hasRole(roles, role) {
  const granted = grantedRoles(roles);
  return granted.has('FULL_ADMIN') || granted.has(role);
}

/**
 * The role guard (API.md §3) as the page can tell it: a caller with `callerRoles` may
 * change a user whose `targetRoles` it all holds, after expanding includes; FULL_ADMIN
 * holds all. The server checks again; this only decides which actions to offer.
 */
export function holdsAll(callerRoles, targetRoles) {
  const granted = grantedRoles(callerRoles);
  if (granted.has('FULL_ADMIN')) return true;
  return [...grantedRoles(targetRoles)].every((role) => granted.has(role));
}

/** "90.0 s" from -90.04 (the magnitude, one decimal). */
export function seconds(value) {
  return `${Math.abs(Number(value)).toFixed(1)} s`;
}

/**
 * Offset in plain words. The daemon uses the ntplib sign: positive = the local clock is
 * behind the NTP server (API.md §6).
 */
export function offsetWords(offset) {
  if (offset === null || offset === undefined) return 'unknown';
  if (Math.abs(offset) < 0.05) return '0.0 s (in step with NTP)';
  const side = offset > 0 ? 'behind' : 'ahead of';
  return `${seconds(offset)} ${side} NTP`;
}

const STATE_LABELS = {
  SYNCED: 'Synchronized',
  SKEWED: 'Clock skewed',
  UNREACHABLE: 'NTP unreachable',
  UNCONFIGURED: 'No NTP server',
};

/** {label, tone, text} for a system.time_sync.status result. */
export function clockSummary(status) {
  const label = STATE_LABELS[status.state] || status.state;
  const limit = `${Number(status.max_offset).toFixed(0)} s`;
  switch (status.state) {
    case 'SYNCED':
      return {
        label,
        tone: 'ok',
        text: `The server clock agrees with NTP: offset ${offsetWords(status.offset)} (up to ${limit} is tolerated).`,
      };
    case 'SKEWED':
      return {
        label,
        tone: 'bad',
        text:
          `The server clock is ${offsetWords(status.offset)}, more than the ${limit} tolerated. ` +
          'Codes from authenticator apps will not match until the clock is fixed.',
      };
    case 'UNREACHABLE':
      return {
        label,
        tone: 'warn',
        text:
          'No NTP server gave a usable answer, so the server clock could not be checked. ' +
          'Codes only work when the clock is right.',
      };
    case 'UNCONFIGURED':
      return {
        label,
        tone: 'warn',
        text:
          'No NTP server is configured, so the server clock is not checked. ' +
          'Codes only work when the clock is right.',
      };
    default:
      return { label, tone: 'warn', text: 'The clock status is unknown.' };
  }
}

/** Parts of an otpauth:// URI: {secret, issuer, account, digits, period}. */
export function parseProvisioningUri(uri) {
  const url = new URL(uri);
  const label = decodeURIComponent(url.pathname.replace(/^\/+/, ''));
  const colon = label.indexOf(':');
  return {
    secret: url.searchParams.get('secret') || '',
    issuer: url.searchParams.get('issuer') || (colon > 0 ? label.slice(0, colon) : ''),
    account: colon >= 0 ? label.slice(colon + 1) : label,
    digits: Number(url.searchParams.get('digits') || 6),
    period: Number(url.searchParams.get('period') || 30),
  };
}

/** "ABCD EFGH ..." : a secret in groups of four for reading aloud or typing. */
export function groupSecret(secret) {
  return secret.replace(/(.{4})(?=.)/g, '$1 ');
}

/** "22:04:31" local time of a Unix timestamp (seconds). */
export function clockTime(unixSeconds) {
  return new Date(unixSeconds * 1000).toLocaleTimeString();
}

/** Milliseconds since the epoch of a datetime on the wire ({"$date": ms}, API.md §2). */
export function wireMillis(value) {
  if (value && typeof value === 'object' && '$date' in value) return Number(value.$date);
  return Number(value);
}

/** "2 Dec 2026, 14:05": a date and time in the browser's language and time zone. */
export function dateTime(millis) {
  return new Date(millis).toLocaleString([], { dateStyle: 'medium', timeStyle: 'short' });
}

/** "00:45" local time (hours and minutes) of milliseconds since the epoch. */
export function shortTime(millis) {
  return new Date(millis).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}

/** A name that is safe in a file name: letters, digits, ".", "_" and "-" only. */
export function fileSafe(text) {
  return String(text).replace(/[^A-Za-z0-9._-]+/g, '_').replace(/^\.+/, '_') || 'user';
}
