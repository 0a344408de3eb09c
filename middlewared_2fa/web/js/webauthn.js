// Passkeys (WebAuthn, API.md §12) in the browser: the daemon sends the options of
// navigator.credentials.create() / .get() in the WebAuthn JSON form (binary fields as
// base64url without padding, WebAuthn L3 §5.1.8) and takes the answer back as
// PublicKeyCredential.toJSON(). This module only converts between the two forms and puts
// the browser's refusals into words: the authenticator and the browser do the
// cryptography, the daemon checks it. Browsers without the L3 JSON helpers get the same
// conversion by hand.

import { h } from './dom.js';

/** True when this page can use passkeys at all (a secure context with WebAuthn). */
export function passkeysAvailable() {
  return (
    typeof window.PublicKeyCredential === 'function' &&
    Boolean(navigator.credentials) &&
    typeof navigator.credentials.create === 'function'
  );
}

// -- base64url <-> ArrayBuffer -------------------------------------------------------------

/** The bytes of a base64url string (with or without padding). */
export function fromBase64url(text) {
  const base64 = String(text).replace(/-/g, '+').replace(/_/g, '/');
  const padded = base64 + '='.repeat((4 - (base64.length % 4)) % 4);
  const binary = atob(padded);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i += 1) bytes[i] = binary.charCodeAt(i);
  return bytes.buffer;
}

/** base64url without padding of an ArrayBuffer or a typed array / DataView. */
export function toBase64url(data) {
  const bytes = data instanceof ArrayBuffer ? new Uint8Array(data) : new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  let binary = '';
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

function isBinary(value) {
  return value instanceof ArrayBuffer || ArrayBuffer.isView(value);
}

/** A copy of `value` with every ArrayBuffer / view in it as base64url (extension results). */
function jsonOf(value) {
  if (isBinary(value)) return toBase64url(value);
  if (Array.isArray(value)) return value.map(jsonOf);
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, jsonOf(item)]));
  }
  return value;
}

function descriptors(list) {
  return (list || []).map((item) => ({ ...item, id: fromBase64url(item.id) }));
}

// -- options ---------------------------------------------------------------------------------

/** PublicKeyCredentialCreationOptions from their JSON form. */
export function creationOptions(json) {
  const parse = window.PublicKeyCredential && window.PublicKeyCredential.parseCreationOptionsFromJSON;
  if (typeof parse === 'function') return parse.call(window.PublicKeyCredential, json);
  return {
    ...json,
    challenge: fromBase64url(json.challenge),
    user: { ...json.user, id: fromBase64url(json.user.id) },
    excludeCredentials: descriptors(json.excludeCredentials),
  };
}

/** PublicKeyCredentialRequestOptions from their JSON form. */
export function requestOptions(json) {
  const parse = window.PublicKeyCredential && window.PublicKeyCredential.parseRequestOptionsFromJSON;
  if (typeof parse === 'function') return parse.call(window.PublicKeyCredential, json);
  return {
    ...json,
    challenge: fromBase64url(json.challenge),
    allowCredentials: descriptors(json.allowCredentials),
  };
}

// -- the result ------------------------------------------------------------------------------

/** PublicKeyCredential.toJSON(), or the same object built by hand. */
export function credentialJSON(credential) {
  if (typeof credential.toJSON === 'function') return credential.toJSON();
  const source = credential.response;
  const response = { clientDataJSON: toBase64url(source.clientDataJSON) };
  if (source.attestationObject) {
    // An AuthenticatorAttestationResponse (create).
    response.attestationObject = toBase64url(source.attestationObject);
    if (typeof source.getAuthenticatorData === 'function') {
      response.authenticatorData = toBase64url(source.getAuthenticatorData());
    }
    if (typeof source.getPublicKey === 'function') {
      const key = source.getPublicKey();
      if (key) response.publicKey = toBase64url(key);
    }
    if (typeof source.getPublicKeyAlgorithm === 'function') {
      response.publicKeyAlgorithm = source.getPublicKeyAlgorithm();
    }
    response.transports = typeof source.getTransports === 'function' ? source.getTransports() : [];
  } else {
    // An AuthenticatorAssertionResponse (get).
    response.authenticatorData = toBase64url(source.authenticatorData);
    response.signature = toBase64url(source.signature);
    if (source.userHandle) response.userHandle = toBase64url(source.userHandle);
  }
  const json = {
    id: credential.id,
    rawId: toBase64url(credential.rawId),
    type: credential.type,
    response,
    clientExtensionResults: jsonOf(
      typeof credential.getClientExtensionResults === 'function' ? credential.getClientExtensionResults() : {},
    ),
  };
  if (credential.authenticatorAttachment) json.authenticatorAttachment = credential.authenticatorAttachment;
  return json;
}

// -- what went wrong, in words ---------------------------------------------------------------

/**
 * A refusal of the browser or the authenticator; `message` is for people. `problem`: when
 * the page's address is the reason, the hostProblem() it came from (its link is shown).
 */
export class PasskeyError extends Error {
  constructor(message, cause, problem = null) {
    super(message);
    this.name = 'PasskeyError';
    this.reason = cause && cause.name ? cause.name : null;
    this.problem = problem;
  }
}

const IPV4 = /^\d{1,3}(\.\d{1,3}){3}$/;

function isIpAddress(hostname) {
  return IPV4.test(hostname) || hostname.includes(':') || hostname.startsWith('[');
}

function isLoopback(hostname) {
  return /^127\./.test(hostname) || hostname === '[::1]' || hostname === '::1' || hostname === 'localhost';
}

/** The UI's address with another host name (the rp id), e.g. http://localhost:8642/ui/. */
function addressAt(name) {
  const loc = window.location;
  const port = loc.port ? `:${loc.port}` : '';
  return `${loc.protocol}//${name}${port}/ui/`;
}

/** For administrators: where the settings behind the address are explained. */
const ADMIN_NOTE = 'Administrators: see docs/passkeys.md.';

/**
 * Why passkeys cannot work at this page's address for rp id `rpId` (null: not known, then
 * `localhost` stands in for a loopback address), or null when they can. A problem is
 * {before, href, after, admin}: the words, split around the address to open instead
 * (`href`, null when it is not known), and whether the administrators' note belongs to it.
 * problemText() and problemContent() put it into words.
 */
export function hostProblem(rpId) {
  const hostname = window.location.hostname;
  const ip = isIpAddress(hostname);
  const mismatch = rpId ? hostname !== rpId && !hostname.endsWith(`.${rpId}`) : false;
  if (!ip && !mismatch) return null;
  const name = rpId || (isLoopback(hostname) ? 'localhost' : null);
  const why = ip
    ? "Passkeys don't work when this page is opened by IP address (browsers refuse them)."
    : `Passkeys of this server work only when this page is opened at ${rpId} (browsers refuse them elsewhere).`;
  return name
    ? { before: `${why} Open `, href: addressAt(name), after: ' instead.', admin: false }
    : { before: `${why} Open it by the server's host name instead.`, href: null, after: '', admin: true };
}

/**
 * Why this page cannot use passkeys at all, or null when it can: the address (hostProblem)
 * or the browser (not a secure context, or no WebAuthn). `rpId` as for hostProblem.
 */
export function pageProblem(rpId = null) {
  const host = hostProblem(rpId);
  if (host || passkeysAvailable()) return host;
  if (window.isSecureContext === false) {
    return {
      before:
        'Passkeys work only on pages opened over https, or at http://localhost on the ' +
        'server itself (browsers refuse them on other http pages).',
      href: null,
      after: '',
      admin: true,
    };
  }
  return { before: 'This browser does not support passkeys.', href: null, after: '', admin: false };
}

/** A problem in plain text (the address written out). */
export function problemText(problem) {
  const text = `${problem.before}${problem.href || ''}${problem.after}`;
  return problem.admin ? `${text} ${ADMIN_NOTE}` : text;
}

/**
 * A problem as content for h() / append(): the address to open as a link, the
 * administrators' note in small print. Built from elements, never from HTML.
 */
export function problemContent(problem) {
  return [
    problem.before,
    problem.href ? h('a', { href: problem.href, class: 'passkey-address', text: problem.href }) : null,
    problem.after,
    problem.admin ? [' ', h('small', { class: 'admin-note', text: ADMIN_NOTE })] : null,
  ];
}

/**
 * Plain words for an error of navigator.credentials.create (`creating`) or .get, as
 * content for h() / append() (a string, or nodes with a link when the address is the
 * reason). passkeyText() gives the same in plain text.
 */
export function passkeyMessage(err, { creating = false, rpId = null } = {}) {
  const problem = problemOf(err, rpId);
  return problem ? problemContent(problem) : words(err, creating);
}

/** passkeyMessage() in plain text. */
export function passkeyText(err, { creating = false, rpId = null } = {}) {
  const problem = problemOf(err, rpId);
  return problem ? problemText(problem) : words(err, creating);
}

function problemOf(err, rpId) {
  if (err instanceof PasskeyError) return err.problem;
  if (err && err.name === 'SecurityError') return hostProblem(rpId) || hostProblem(null);
  return null;
}

function words(err, creating) {
  if (err instanceof PasskeyError) return err.message;
  const name = err && err.name;
  switch (name) {
    case 'NotAllowedError':
      return creating
        ? 'The passkey request was cancelled or timed out.'
        : 'The passkey request was cancelled or timed out. If this device or security key ' +
            'has no passkey for this account, use another one or enter a code.';
    case 'AbortError':
      return 'The passkey request was cancelled.';
    case 'InvalidStateError':
      return creating
        ? 'This authenticator is registered already for your account: use another one, or keep the passkey you have.'
        : 'The authenticator could not be used. Try again.';
    case 'SecurityError':
      return 'Passkeys cannot be used at this page\'s address. ' + ADMIN_NOTE;
    case 'NotSupportedError':
      return 'This browser or authenticator does not support what the server asks for.';
    case 'ConstraintError':
      return 'The authenticator cannot verify you (set up its PIN or fingerprint first).';
    case 'NotReadableError':
    case 'UnknownError':
      return 'The authenticator did not answer. Try again.';
    default:
      return 'The browser could not use the passkey. Try again.';
  }
}

/** A PasskeyError for a page that cannot use passkeys (`problem` from pageProblem). */
function refused(problem) {
  return new PasskeyError(problemText(problem), null, problem);
}

/**
 * Make a passkey with creation options in the JSON form: resolves with the credential as
 * JSON (for user.webauthn_register_finish). Rejects with PasskeyError.
 */
export async function createPasskey(optionsJSON) {
  const rpId = optionsJSON && optionsJSON.rp ? optionsJSON.rp.id : null;
  const problem = pageProblem(rpId);
  if (problem) throw refused(problem);
  let credential;
  try {
    credential = await navigator.credentials.create({ publicKey: creationOptions(optionsJSON) });
  } catch (err) {
    throw new PasskeyError(passkeyText(err, { creating: true, rpId }), err, problemOf(err, rpId));
  }
  if (!credential) throw new PasskeyError(words({ name: 'NotAllowedError' }, true));
  return credentialJSON(credential);
}

/**
 * Use a passkey with request options in the JSON form: resolves with the assertion as
 * JSON (for the WEBAUTHN login step). Rejects with PasskeyError.
 */
export async function getPasskey(optionsJSON) {
  const rpId = optionsJSON ? optionsJSON.rpId : null;
  const problem = pageProblem(rpId);
  if (problem) throw refused(problem);
  let credential;
  try {
    credential = await navigator.credentials.get({ publicKey: requestOptions(optionsJSON) });
  } catch (err) {
    throw new PasskeyError(passkeyText(err, { rpId }), err, problemOf(err, rpId));
  }
  if (!credential) throw new PasskeyError(words({ name: 'NotAllowedError' }, false));
  return credentialJSON(credential);
}
