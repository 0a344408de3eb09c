// Turning error replies (API.md §2) into sentences for people.

import { ConnectionLost, RpcError } from './rpc.js';

/** Sentence-case a server message: "must be ..." -> "Must be ...". */
export function sentence(text) {
  // pydantic prefixes messages of custom validators with "Value error, ".
  const value = String(text || '').trim().replace(/^Value error, /, '');
  if (!value) return '';
  const first = value.charAt(0).toUpperCase() + value.slice(1);
  return /[.!?]$/.test(first) ? first : `${first}.`;
}

/** True for the rate limit of unauthenticated calls (EBUSY "Rate Limit Exceeded"). */
export function isRateLimit(err) {
  return err instanceof RpcError && err.errname === 'EBUSY' && /rate limit/i.test(err.message);
}

/** A short explanation of any error thrown by a call. */
export function describeError(err) {
  if (err instanceof ConnectionLost) {
    return 'The server cannot be reached. Check that it is running, then try again.';
  }
  if (!(err instanceof RpcError)) {
    return 'Something went wrong in the page. Reload it and try again.';
  }
  if (err.code === -32602) {
    const lines = err.extra.map(([attribute, message]) => `${fieldName(attribute)}: ${message}`);
    return lines.length ? sentence(lines.join('; ')) : sentence(err.message);
  }
  switch (err.errname) {
    case 'ENOTAUTHENTICATED':
      return 'Your session has ended. Log in again.';
    case 'EACCES':
    case 'EPERM':
      return 'You are not allowed to do this.';
    case 'EBUSY':
      return isRateLimit(err)
        ? 'Too many attempts from this address. Wait a minute, then try again.'
        : sentence(err.message);
    default:
      break;
  }
  if (err.code === -32603) return 'The server failed to do this (internal error). Its log has the details.';
  if (err.code === -32000) return 'The server is busy. Try again in a moment.';
  return sentence(err.message);
}

/** "auth_twofactor_update.services.ssh" -> "services.ssh" (the part after the argument). */
export function fieldPath(attribute) {
  const text = String(attribute || '');
  const dot = text.indexOf('.');
  return dot === -1 ? text : text.slice(dot + 1);
}

function fieldName(attribute) {
  return fieldPath(attribute).replaceAll('_', ' ').replaceAll('.', ' ') || 'Request';
}
