import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { parse } from 'yaml';
import type { CloudConfig } from '../../src/bootstrap/cloud-config.js';
import { FETCH_SCRIPT_PATH, sealUserData } from '../../src/bootstrap/sealed-user-data.js';
import { decodePayload, encodePayload } from '../../src/aws/bootstrap-payloads.js';

// A private key and a token, assembled so that no key-shaped text is committed.
const KEY = ['-----BEGIN', 'RSA PRIVATE KEY-----\nMIIEow\n-----END RSA', 'PRIVATE KEY-----\n'].join(' ');
const TOKEN = 'abcdef.0123456789abcdef';

const CONFIG: CloudConfig = {
  write_files: [
    { path: '/etc/kubernetes/pki/ca.key', owner: 'root:root', permissions: '0600', content: KEY },
    { path: '/run/kubeadm/kubeadm-join-config.yaml', owner: 'root:root', permissions: '0640', content: `discovery:\n  bootstrapToken:\n    token: ${TOKEN}\nnodeRegistration:\n  name: '{{ ds.meta_data.local_hostname }}'\n` },
    { path: '/etc/motd', content: Buffer.from('hello\n').toString('base64'), encoding: 'b64' },
    { path: '/etc/gz', content: gzipSync(Buffer.from('zipped')).toString('base64'), encoding: 'gzip+base64', permissions: '0644' },
    { path: '/etc/log', content: 'second\n', append: true },
  ],
  runcmd: ['echo pre > /dev/null', ['kubeadm', 'join', '--config', '/run/kubeadm/kubeadm-join-config.yaml', '--node-name', 'n-{{ v1.instance_id }}'], "echo it's done"],
  users: [{ name: 'ops', passwd: '$6$salt$hash', sudo: 'ALL=(ALL) NOPASSWD:ALL', ssh_authorized_keys: ['ssh-ed25519 AAAA ops'] }],
  ntp: { servers: ['169.254.169.123'] },
};

describe('bootstrap: sealed user data (the secret half in Secrets Manager)', () => {
  const sealed = sealUserData(CONFIG, { secretId: 'capflow/dev/md-0', region: 'eu-west-1' });

  it('keeps no key, token or password hash in the user data; it runs the fetch script with the secret and the instance data', () => {
    expect(sealed.userData).to.not.include('PRIVATE KEY').and.not.include(TOKEN).and.not.include('$6$');
    const stub = parse(sealed.userData.replace(/^## template: jinja\n/, '')) as CloudConfig;
    expect(stub.write_files.map((f) => f.path)).to.deep.equal([FETCH_SCRIPT_PATH]);
    expect(stub.runcmd).to.have.length(1);
    expect(stub.runcmd[0]).to.include(`${FETCH_SCRIPT_PATH} 'capflow/dev/md-0' 'eu-west-1'`).and.include("CAPFLOW_LOCAL_HOSTNAME='{{ ds.meta_data.local_hostname }}'");
    expect(stub.ntp).to.deep.equal(CONFIG.ntp);
    expect(stub.users).to.deep.equal([{ name: 'ops', sudo: 'ALL=(ALL) NOPASSWD:ALL', ssh_authorized_keys: ['ssh-ed25519 AAAA ops'] }]);
    expect(sealed.userData.startsWith('## template: jinja\n#cloud-config\n')).to.equal(true);
  });

  it('the payload, run by sh, writes every file with its content and mode, substitutes instance data, sets the password and runs the commands in order', () => {
    const root = mkdtempSync(path.join(os.tmpdir(), 'capflow-payload-'));
    try {
      // The file part writes under a temp root, the commands are recorded instead of run.
      const [files, commands] = sealed.payload.split('\nset +e\n') as [string, string];
      const rooted = files.replace(/'\//g, `"$ROOT"'/`).replace(/^chown .*$/gm, ':').replace(/\| chpasswd -e$/m, `> "$ROOT/chpasswd"`);
      const quote = (c: string) => `'${c.replace(/'/g, `'\\''`)}'`;
      const recorded = commands.trim().split('\n').map((c) => `printf '%s\\n' ${quote(c)} >> "$ROOT/commands"`).join('\n');
      const script = path.join(root, 'payload.sh');
      writeFileSync(script, `${rooted}\n${recorded}\n`);
      const res = spawnSync('sh', [script], { env: { ...process.env, ROOT: root, CAPFLOW_LOCAL_HOSTNAME: 'ip-10-0-1-9.ec2.internal', CAPFLOW_INSTANCE_ID: 'i-0abc' }, encoding: 'utf8' });
      expect(res.status, res.stderr).to.equal(0);
      expect(readFileSync(path.join(root, 'etc/kubernetes/pki/ca.key'), 'utf8')).to.equal(KEY);
      expect(statSync(path.join(root, 'etc/kubernetes/pki/ca.key')).mode & 0o777).to.equal(0o600);
      expect(readFileSync(path.join(root, 'run/kubeadm/kubeadm-join-config.yaml'), 'utf8')).to.include(`token: ${TOKEN}`).and.include("name: 'ip-10-0-1-9.ec2.internal'");
      expect(readFileSync(path.join(root, 'etc/motd'), 'utf8')).to.equal('hello\n');
      expect(readFileSync(path.join(root, 'etc/gz'), 'utf8')).to.equal('zipped');
      expect(readFileSync(path.join(root, 'chpasswd'), 'utf8')).to.equal('ops:$6$salt$hash\n');
      const ran = readFileSync(path.join(root, 'commands'), 'utf8').trim().split('\n');
      expect(ran).to.deep.equal(['echo pre > /dev/null', `'kubeadm' 'join' '--config' '/run/kubeadm/kubeadm-join-config.yaml' '--node-name' 'n-'"\${CAPFLOW_INSTANCE_ID}"`, "echo it's done"]);
      // and the recorded argv command, run by sh, gets the instance id
      const argv = spawnSync('sh', ['-c', `set -- ${ran[1]!.replace(/^'kubeadm' /, '')}; printf '%s|' "$@"`], { env: { ...process.env, CAPFLOW_INSTANCE_ID: 'i-0abc' }, encoding: 'utf8' });
      expect(argv.stdout).to.equal('join|--config|/run/kubeadm/kubeadm-join-config.yaml|--node-name|n-i-0abc|');
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });

  it('appends where the entry says append', () => {
    expect(sealed.payload).to.include("base64 -d >> '/etc/log'");
  });

  it('the payload is kept gzip + base64 and comes back byte for byte', () => {
    const stored = encodePayload(sealed.payload);
    expect(stored).to.match(/^[A-Za-z0-9+/=]+$/);
    expect(Buffer.byteLength(stored)).to.be.below(Buffer.byteLength(sealed.payload));
    expect(decodePayload(stored)).to.equal(sealed.payload);
  });
});
