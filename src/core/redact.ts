/**
 * Redaction of secrets before anything reaches a log, a parameter or stdout.
 * Two nets: patterns that look like key material wherever they appear, and
 * field names that carry secrets whatever their value looks like.
 */

export const REDACTED = '[REDACTED]';

const PATTERNS: Array<[RegExp, string]> = [
  // PEM blocks: private keys, certificates requests and all (whole block).
  [/-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----[\s\S]*?(-----END [A-Z0-9 ]*PRIVATE KEY-----|$)/g, REDACTED],
  // kubeconfig / YAML fields whose value is secret material.
  [/\b(client-key-data|client-certificate-data|token|password|secret|aws_secret_access_key|aws_session_token)(\s*[:=]\s*)("?)([^\s"',}]{4,})\3/gi, `$1$2$3${REDACTED}$3`],
  // HTTP authorization headers and bearer tokens.
  [/\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]{8,}/g, `$1 ${REDACTED}`],
  // kubeadm's certificate key (decrypts the uploaded control plane certificates), as a flag or a field.
  [/\b(certificate-key|certificateKey)(\s*[:=]?\s*)("?)([0-9a-fA-F]{64})\3/g, `$1$2$3${REDACTED}$3`],
  // kubeadm bootstrap tokens: [a-z0-9]{6}.[a-z0-9]{16}.
  [/\b[a-z0-9]{6}\.[a-z0-9]{16}\b/g, REDACTED],
  // AWS access key ids.
  [/\b(AKIA|ASIA)[0-9A-Z]{16}\b/g, REDACTED],
  // JWTs (service account tokens).
  [/\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}/g, REDACTED],
  // GitHub / GitLab personal tokens.
  [/\b(ghp|gho|ghs|ghu|github_pat|glpat)[-_][A-Za-z0-9_]{16,}/g, REDACTED],
];

/** Field names whose values are always secret, whatever they look like. */
const SECRET_KEY = /(^|[-_.])(password|passwd|secret|token|private[-_]?key|privatekey|client[-_]?key[-_]?data|secret[-_]?access[-_]?key|session[-_]?token|ca[-_]?key|sa[-_]?key|kubeconfig|credentials?|webhook[-_]?secret|user[-_]?data|userdata)$/i;

export function isSecretKey(key: string): boolean {
  return SECRET_KEY.test(key);
}

export function redactString(text: string): string {
  let out = text;
  for (const [pattern, replacement] of PATTERNS) out = out.replace(pattern, replacement);
  // A kubeconfig document carries credentials in many forms; never pass one on.
  if (/\bapiVersion:\s*v1\b[\s\S]*\bkind:\s*Config\b[\s\S]*\busers:/.test(out)) return `${REDACTED} (kubeconfig)`;
  return out;
}

/**
 * Masks the user-info part of every URL in the text (`https://user:token@host/x` becomes
 * `https://***@host/x`): a repository URL may carry credentials, and git repeats it in errors.
 * Kept out of redactString, whose callers also use it to detect secrets and a plain `ssh://git@` is none.
 */
export function redactUrlCredentials(text: string): string {
  return text.replace(/\b([a-z][a-z0-9+.-]*:\/\/)[^\s/?#@]+@/gi, '$1***@');
}

/** Deep copy of a value with secret fields and secret-looking strings redacted. */
export function redact<T>(value: T, seen = new WeakSet<object>()): T {
  if (typeof value === 'string') return redactString(value) as T;
  if (typeof value !== 'object' || value === null) return value;
  if (seen.has(value)) return '[Circular]' as T;
  seen.add(value);
  if (Array.isArray(value)) return value.map((v: unknown) => redact(v, seen)) as T;
  if (value instanceof Error) {
    return { name: value.name, message: redactString(value.message) } as T;
  }
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) {
    out[k] = isSecretKey(k) && v !== undefined && v !== null && v !== '' ? REDACTED : redact(v, seen);
  }
  return out as T;
}
