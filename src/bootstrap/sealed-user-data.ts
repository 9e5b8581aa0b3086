/**
 * User data that holds no secret. A machine's cloud-config is split in two:
 *
 *   - the user data EC2 keeps (readable by anyone with DescribeInstanceAttribute or the launch
 *     template): cloud-config with the modules that carry nothing secret (bootcmd, ntp, users without
 *     password hashes, disks, mounts), a small fetch script, and one runcmd that runs it;
 *   - the payload, kept in AWS Secrets Manager: a POSIX shell script that writes every file (the
 *     cluster certificates and keys, the kubeadm configuration with its join token, the spec's
 *     files) with their owners and modes, sets password hashes, then runs the commands of the
 *     original runcmd in order (preKubeadmCommands, kubeadm, postKubeadmCommands).
 *
 * The AWS provider does the same with Secrets Manager; here the machine only reads its payload
 * (secretsmanager:GetSecretValue on capflow's own prefix) and never deletes it: the steps delete it
 * once the machines joined, so the instance role needs no write permission.
 *
 * cloud-init renders `{{ ds.meta_data.* }}` and `{{ v1.* }}` in the user data only; so the stub
 * passes those values to the fetch script in its environment, and the payload substitutes them in
 * file contents and commands.
 */
import { gunzipSync } from 'node:zlib';
import { INSTANCE_DATA_EXPRESSIONS } from '../spec/kubeadm-spec.js';
import { cloudConfigText, type CloudConfig, type WriteFile } from './cloud-config.js';

/** Where the fetch script lives on the machine. */
export const FETCH_SCRIPT_PATH = '/usr/local/sbin/capflow-bootstrap';

/** Instance data a template may use, as cloud-init names them, and the variable the payload reads (CAPFLOW_LOCAL_HOSTNAME). */
const INSTANCE_DATA: ReadonlyArray<[string, string]> = INSTANCE_DATA_EXPRESSIONS.map((e) => [e, `CAPFLOW_${e.split('.').at(-1)!.toUpperCase()}`]);
const INSTANCE_VARIABLE = new Map(INSTANCE_DATA);
const EXPRESSION = /\{\{\s*([\w.]+)\s*\}\}/g;

// Retries cover an instance role whose permission is still propagating, and a slow network at boot.
const FETCH_SCRIPT = `#!/bin/sh
# capflow: reads this machine's bootstrap payload (certificates, kubeadm configuration, join token)
# from AWS Secrets Manager and runs it. The payload never touches the user data.
set -u
secret_id="$1"
region="$2"
umask 077
mkdir -p /run/capflow
payload=/run/capflow/bootstrap.sh
tries=0
# The secret holds the payload gzip-compressed and base64-encoded.
until aws secretsmanager get-secret-value --region "$region" --secret-id "$secret_id" --query SecretString --output text > "$payload.b64" 2>/run/capflow/fetch.err \
  && base64 -d < "$payload.b64" | gunzip > "$payload" && [ -s "$payload" ]; do
  tries=$((tries + 1))
  if [ "$tries" -ge "\${CAPFLOW_FETCH_TRIES:-30}" ]; then
    echo "capflow: cannot read the bootstrap payload $secret_id in $region after $tries tries:" >&2
    cat /run/capflow/fetch.err >&2
    rm -f "$payload" "$payload.b64"
    exit 1
  fi
  sleep "\${CAPFLOW_FETCH_DELAY:-10}"
done
sh "$payload"
code=$?
rm -f "$payload" "$payload.b64" /run/capflow/fetch.err
exit $code
`;

export interface SecretReference {
  /** The Secrets Manager secret's name. */
  secretId: string;
  region: string;
}

export interface SealedUserData {
  /** What EC2 keeps: no key, no token, no password hash. */
  userData: string;
  /** What Secrets Manager keeps: the shell script the fetch script runs. */
  payload: string;
}

export function sealUserData(config: CloudConfig, ref: SecretReference): SealedUserData {
  const { write_files: files, runcmd, users, ...modules } = config;
  const stubUsers = Array.isArray(users) ? users.map((u: Record<string, unknown>) => withoutKey(u, 'passwd')) : undefined;
  const environment = [...new Set(INSTANCE_DATA.map(([expr, name]) => `${name}='{{ ${expr} }}'`))].join(' ');
  const stub: CloudConfig = {
    ...modules,
    ...(stubUsers ? { users: stubUsers } : {}),
    write_files: [{ path: FETCH_SCRIPT_PATH, owner: 'root:root', permissions: '0755', content: FETCH_SCRIPT }],
    runcmd: [`${environment} ${FETCH_SCRIPT_PATH} ${quote(ref.secretId)} ${quote(ref.region)}`],
  };
  const passwords = Array.isArray(users) ? users.filter((u: Record<string, unknown>) => typeof u.passwd === 'string') : [];
  return { userData: cloudConfigText(stub), payload: payloadScript(files, runcmd, passwords as Array<{ name: string; passwd: string }>) };
}

function payloadScript(files: WriteFile[], runcmd: Array<string | string[]>, passwords: Array<{ name: string; passwd: string }>): string {
  const lines = ['#!/bin/sh', '# capflow bootstrap payload: secret. Files first (stop at the first failure), then the commands.', 'set -e', ''];
  for (const file of files) lines.push(...writeFileLines(file));
  for (const user of passwords) {
    lines.push(`printf '%s\\n' ${quote(`${user.name}:${user.passwd}`)} | chpasswd -e`);
  }
  // runcmd semantics: one /bin/sh script without `set -e`, every command runs.
  lines.push('', 'set +e');
  for (const command of runcmd) lines.push(Array.isArray(command) ? command.map((a) => substituteQuoted(a)).join(' ') : substitute(command, (v) => `\${${v}}`));
  lines.push('');
  return lines.join('\n');
}

function writeFileLines(file: WriteFile): string[] {
  const bytes = decodeContent(file);
  const placeholders = new Map<string, string>();
  const text = bytes.toString('utf8');
  let body = bytes;
  // Only text with an expression is rewritten (binary content stays byte for byte).
  if (text.includes('{{')) {
    body = Buffer.from(
      substitute(text, (variable) => {
        const mark = `@@${variable}@@`;
        placeholders.set(mark, variable);
        return mark;
      }),
      'utf8',
    );
  }
  const path = quote(file.path);
  const redirect = file.append ? '>>' : '>';
  const out = [`mkdir -p "$(dirname ${path})"`, `base64 -d ${redirect} ${path} <<'CAPFLOW_EOF'`, ...wrap(body.toString('base64'), 76), 'CAPFLOW_EOF'];
  // Hostnames, addresses, ids and zones hold no `|`, `&` or `\`: safe in a sed replacement.
  for (const [mark, variable] of placeholders) out.push(`sed -i "s|${mark}|\${${variable}}|g" ${path}`);
  out.push(`chmod ${file.permissions ?? '0644'} ${path}`, `chown ${file.owner ?? 'root:root'} ${path}`, '');
  return out;
}

/** The bytes cloud-init would write for this entry (encodings b64, base64, gzip, gz+b64, gzip+base64). */
function decodeContent(file: WriteFile): Buffer {
  const encoding = (file.encoding ?? '').toLowerCase();
  const raw = ['b64', 'base64', 'gz+b64', 'gz+base64', 'gzip+b64', 'gzip+base64'].includes(encoding) ? Buffer.from(file.content, 'base64') : Buffer.from(file.content, 'utf8');
  return ['gz', 'gzip', 'gz+b64', 'gz+base64', 'gzip+b64', 'gzip+base64'].includes(encoding) ? gunzipSync(raw) : raw;
}

function substitute(text: string, replace: (variable: string) => string): string {
  return text.replace(EXPRESSION, (whole, name: string) => {
    const variable = INSTANCE_VARIABLE.get(name);
    return variable ? replace(variable) : whole;
  });
}

/** One argument of an argv command: single-quoted, with instance data spliced in as "${VAR}". */
function substituteQuoted(arg: string): string {
  const parts: string[] = [];
  let last = 0;
  for (const m of arg.matchAll(EXPRESSION)) {
    const variable = INSTANCE_VARIABLE.get(m[1]!);
    if (!variable) continue;
    parts.push(quote(arg.slice(last, m.index)), `"\${${variable}}"`);
    last = m.index + m[0].length;
  }
  parts.push(quote(arg.slice(last)));
  return parts.filter((p) => p !== "''").join('') || "''";
}

function quote(value: string): string {
  return `'${value.replace(/'/g, `'\\''`)}'`;
}

function wrap(text: string, width: number): string[] {
  const out: string[] = [];
  for (let i = 0; i < text.length; i += width) out.push(text.slice(i, i + width));
  return out.length > 0 ? out : [''];
}

function withoutKey(value: Record<string, unknown>, key: string): Record<string, unknown> {
  return Object.fromEntries(Object.entries(value).filter(([k]) => k !== key));
}
