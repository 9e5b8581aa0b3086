// The cloud-init stand-in: user data decoding, and the boot's modules against a temp dir as the
// machine's root. Commands are recorded; only the boot's own scripts (bootcmd, runcmd, #! parts)
// really run, with /bin/sh, so their semantics are cloud-init's and the host is never touched.

import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { boot, type BootContext } from '../../src/emulator/cloud-init.js';
import { decodeUserData, type InstanceMetadata, type UserDataPart } from '../../src/emulator/user-data.js';

const meta: InstanceMetadata = {
  instanceId: 'i-0123456789abcdef0',
  localHostname: 'ip-10-0-1-23.ec2.internal',
  localIpv4: '10.0.1.23',
  region: 'us-east-1',
  availabilityZone: 'us-east-1a',
};

const decode = (text: string | Buffer): UserDataPart[] => decodeUserData(Buffer.isBuffer(text) ? text : Buffer.from(text), meta);

interface Call {
  argv: string[];
  env?: Record<string, string>;
  /** The script's text, for the boot's own scripts (read when it runs: bootcmd's is removed after). */
  script?: string;
}

/** A machine root in a temp dir and a ctx.run that records every call and runs only the boot's scripts. */
function machine(exitCodes: (argv: string[]) => number = () => 0) {
  const root = mkdtempSync(join(tmpdir(), 'capflow-ci-root-'));
  const calls: Call[] = [];
  const lines: string[] = [];
  const onRun: ((argv: string[]) => void)[] = [];
  const ctx: BootContext = {
    root,
    meta,
    log: (line) => lines.push(line),
    run: async (cmd, opts) => {
      const argv = typeof cmd === 'string' ? ['/bin/sh', '-c', cmd] : cmd;
      const scriptPath = argv[0] === '/bin/sh' ? argv[1] : argv[0]?.startsWith(root) ? argv[0] : undefined;
      calls.push({ argv, ...(opts?.env ? { env: opts.env } : {}), ...(scriptPath ? { script: readFileSync(scriptPath, 'utf8') } : {}) });
      for (const hook of onRun) hook(argv);
      if (!scriptPath) return exitCodes(argv);
      return new Promise<number>((resolve) => {
        const child = spawn(argv[0]!, argv.slice(1), { env: { ...process.env, ...opts?.env }, stdio: 'ignore' });
        child.on('close', (code) => resolve(code ?? 1));
      });
    },
  };
  const file = (path: string): string => join(root, path);
  return { root, ctx, calls, lines, onRun, file, read: (path: string) => readFileSync(file(path), 'utf8') };
}

const scriptsDir = `/var/lib/cloud/instances/${meta.instanceId}/scripts`;
const modeOf = (path: string): string => (statSync(path).mode & 0o7777).toString(8).padStart(4, '0');
const names = (report: { modules: { name: string }[] }): string[] => report.modules.map((m) => m.name);

function mime(parts: { type: string; body: string; headers?: string[] }[], boundary = '==BOUNDARY=='): string {
  const out = ['Content-Type: multipart/mixed; boundary="' + boundary + '"', 'MIME-Version: 1.0', ''];
  for (const p of parts) out.push(`--${boundary}`, `Content-Type: ${p.type}`, ...(p.headers ?? []), '', p.body);
  out.push(`--${boundary}--`, '');
  return out.join('\r\n');
}

describe('emulator/cloud-init: decoding user data', () => {
  it('empty user data has no parts', () => {
    expect(decode('')).to.deep.equal([]);
    expect(decode(gzipSync(Buffer.alloc(0)))).to.deep.equal([]);
  });

  it('a #cloud-config document is one cloud-config part, read as YAML 1.1 as cloud-init reads it', () => {
    const [part, ...rest] = decode('#cloud-config\nruncmd: [echo hi]\nwrite_files: [{path: /a, permissions: 0600}]\nmanage_etc_hosts: yes\n');
    expect(rest).to.deep.equal([]);
    expect(part).to.deep.include({ kind: 'cloud-config', name: 'part-001' });
    const config = (part as { config: Record<string, unknown> }).config;
    expect(config.runcmd).to.deep.equal(['echo hi']);
    expect(config.write_files).to.deep.equal([{ path: '/a', permissions: 0o600 }]);
    expect(config.manage_etc_hosts).to.equal(true);
  });

  it('gzip-compressed user data is decompressed first', () => {
    const parts = decode(gzipSync('#cloud-config\nruncmd: [echo hi]\n'));
    expect(parts).to.have.length(1);
    expect(parts[0]).to.deep.include({ kind: 'cloud-config', config: { runcmd: ['echo hi'] } });
  });

  it('a #! script is one shell-script part', () => {
    expect(decode('#!/bin/bash\necho hi\n')).to.deep.equal([{ kind: 'shell-script', name: 'part-001', text: '#!/bin/bash\necho hi\n' }]);
  });

  it('anything else is an error part, as cloud-init logs unhandled non-multipart user data', () => {
    for (const garbage of ['hello world\n', ' #cloud-config\n', Buffer.from([0x00, 0xff, 0x13, 0x37])]) {
      const parts = decode(garbage);
      expect(parts).to.have.length(1);
      expect(parts[0]).to.deep.include({ kind: 'error', code: 'USER_DATA_UNHANDLED' });
      expect((parts[0] as { message: string }).message).to.contain('Unhandled non-multipart userdata');
    }
  });

  it('broken gzip, broken YAML and a cloud-config that is no mapping are error parts', () => {
    expect(decode(Buffer.from([0x1f, 0x8b, 1, 2, 3]))[0]).to.deep.include({ kind: 'error', code: 'USER_DATA_GZIP' });
    expect(decode('#cloud-config\nruncmd: [\n')[0]).to.deep.include({ kind: 'error', code: 'USER_DATA_YAML' });
    expect(decode('#cloud-config\n- a\n')[0]).to.deep.include({ kind: 'error', code: 'USER_DATA_YAML' });
  });

  it('a MIME multipart message is split into its parts, in order, named by filename or position', () => {
    const parts = decode(
      mime([
        { type: 'text/cloud-config; charset="us-ascii"', body: '#cloud-config\nruncmd: [one]\n' },
        { type: 'text/x-shellscript', headers: ['Content-Disposition: attachment; filename="setup.sh"'], body: '#!/bin/sh\necho two\n' },
        {
          type: 'text/cloud-config',
          headers: ['Content-Transfer-Encoding: base64'],
          body: Buffer.from('#cloud-config\nbootcmd: [three]\n').toString('base64'),
        },
        { type: 'text/plain', body: '#!/bin/sh\necho four' },
        { type: 'text/jinja2', body: '## template: jinja\n#cloud-config\nhostname: "{{ ds.meta_data.local_hostname }}"\n' },
      ]),
    );
    expect(parts.map((p) => [p.kind, p.name])).to.deep.equal([
      ['cloud-config', 'part-001'],
      ['shell-script', 'setup.sh'],
      ['cloud-config', 'part-003'],
      ['shell-script', 'part-004'],
      ['cloud-config', 'part-005'],
    ]);
    expect(parts[1]).to.deep.include({ text: '#!/bin/sh\necho two\n' });
    expect(parts[2]).to.deep.include({ config: { bootcmd: ['three'] } });
    expect(parts[3]).to.deep.include({ text: '#!/bin/sh\necho four' });
    expect(parts[4]).to.deep.include({ config: { hostname: meta.localHostname } });
  });

  it('a gzip-compressed MIME message and a gzip part inside one are decompressed', () => {
    const inner = gzipSync('#!/bin/sh\necho zipped\n').toString('base64');
    const parts = decode(gzipSync(mime([{ type: 'application/x-gzip', headers: ['Content-Transfer-Encoding: base64'], body: inner }])));
    expect(parts).to.deep.equal([{ kind: 'shell-script', name: 'part-001', text: '#!/bin/sh\necho zipped\n' }]);
  });

  it('a MIME part cloud-init handles but the emulator does not is an error part naming its type', () => {
    const parts = decode(mime([{ type: 'text/cloud-boothook', body: '#cloud-boothook\necho early\n' }]));
    expect(parts[0]).to.deep.include({ kind: 'error', code: 'USER_DATA_UNSUPPORTED' });
    expect((parts[0] as { message: string }).message).to.contain('text/cloud-boothook');
  });

  it('a MIME message without its closing boundary is an error part', () => {
    const parts = decode('MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=XX\n\n--XX\nContent-Type: text/x-shellscript\n\n#!/bin/sh\n');
    expect(parts[0]).to.deep.include({ kind: 'error', code: 'USER_DATA_MIME' });
  });

  it('the jinja template of Cluster API kubeadm bootstrap data renders the instance metadata, in any spacing', () => {
    const parts = decode(
      [
        '## template: jinja',
        '#cloud-config',
        'write_files:',
        '- path: /run/kubeadm/kubeadm.yaml',
        '  content: |',
        '    nodeRegistration:',
        "      name: '{{ ds.meta_data.local_hostname }}'",
        '      ip: {{ds.meta_data.local_ipv4}}',
        '      id: {{   ds.meta_data.instance_id   }}',
        '      v1: "{{ v1.local_hostname }} {{ v1.instance_id }} {{ v1.region }} {{ v1.availability_zone }}"',
      ].join('\n'),
    );
    expect(parts).to.have.length(1);
    const config = (parts[0] as { config: Record<string, unknown> }).config as { write_files: { content: string }[] };
    const content = config.write_files[0]!.content;
    expect(content).to.equal(
      "nodeRegistration:\n  name: 'ip-10-0-1-23.ec2.internal'\n  ip: 10.0.1.23\n  id: i-0123456789abcdef0\n" +
        '  v1: "ip-10-0-1-23.ec2.internal i-0123456789abcdef0 us-east-1 us-east-1a"\n',
    );
  });

  it('a jinja template that renders a #! script is a shell-script part', () => {
    expect(decode('## template: jinja\n#!/bin/sh\necho {{ v1.instance_id }}\n')).to.deep.equal([
      { kind: 'shell-script', name: 'part-001', text: `#!/bin/sh\necho ${meta.instanceId}\n` },
    ]);
  });

  it('an unknown jinja variable is an error part naming it', () => {
    const [part] = decode('## template: jinja\n#cloud-config\nhostname: {{ ds.meta_data.public_hostname }}\n');
    expect(part).to.deep.include({ kind: 'error', code: 'USER_DATA_JINJA' });
    expect((part as { message: string }).message).to.contain('"ds.meta_data.public_hostname"');
  });

  it('jinja statements are an error part, not silently left in', () => {
    const [part] = decode('## template: jinja\n#cloud-config\n{% if true %}\nhostname: a\n{% endif %}\n');
    expect(part).to.deep.include({ kind: 'error', code: 'USER_DATA_JINJA' });
  });
});

describe('emulator/cloud-init: the boot', () => {
  const roots: string[] = [];
  const boot1 = async (m: ReturnType<typeof machine>, userData: string) => {
    roots.push(m.root);
    return boot(decode(userData), m.ctx);
  };
  after(() => roots.forEach((r) => rmSync(r, { recursive: true, force: true })));

  it("runs the modules in cloud-init's stage order; runcmd and the #! parts run in scripts_user, after deferred files", async () => {
    const m = machine();
    let deferredBeforeScripts: boolean | undefined;
    m.onRun.push((argv) => {
      if (argv[0]?.endsWith('/part-002')) deferredBeforeScripts = existsSync(m.file('/etc/deferred'));
    });
    const report = await boot1(
      m,
      mime([
        {
          type: 'text/cloud-config',
          body: [
            '#cloud-config',
            'final_message: done in $uptime s',
            'runcmd: [[touch, /dev/null]]',
            'packages: [containerd]',
            'package_update: true',
            'ntp: {enabled: true, servers: [169.254.169.123]}',
            'apt: {preserve_sources_list: true}',
            'write_files:',
            '- {path: /etc/deferred, content: later, defer: true}',
            '- {path: /etc/now, content: first}',
            'users: [{name: kube, lock_passwd: false}]',
            'bootcmd: [echo boot]',
          ].join('\n'),
        },
        { type: 'text/x-shellscript', body: '#!/bin/sh\nexit 0\n' },
      ]),
    );
    expect(report.errors).to.deep.equal([]);
    expect(report.ok).to.equal(true);
    expect(names(report)).to.deep.equal([
      'bootcmd',
      'write_files',
      'users_groups',
      'apt_configure',
      'ntp',
      'runcmd',
      'package_update_upgrade_install',
      'write_files_deferred',
      'scripts_user',
      'final_message',
    ]);
    expect(m.calls.map((c) => c.argv[0]!.replace(m.root, ''))).to.deep.equal([
      '/bin/sh',
      'useradd',
      `${scriptsDir}/part-002`,
      `${scriptsDir}/runcmd`,
    ]);
    expect(deferredBeforeScripts).to.equal(true);
    expect(report.modules.at(-1)).to.deep.include({ ok: true });
    expect(m.lines.some((l) => /^done in [0-9.]+ s$/.test(l))).to.equal(true);
  });

  it('bootcmd runs as one /bin/sh script with INSTANCE_ID in its environment', async () => {
    const m = machine();
    const out = m.file('/iid');
    const report = await boot1(m, `#cloud-config\nbootcmd:\n- echo "$INSTANCE_ID" > ${out}\n- [sh, -c, 'echo "$0" > ${out}.2', "it's"]\n`);
    expect(report.ok, report.errors.join('\n')).to.equal(true);
    expect(m.calls[0]!.env).to.deep.equal({ INSTANCE_ID: meta.instanceId });
    expect(m.calls[0]!.script).to.equal(`#!/bin/sh\necho "$INSTANCE_ID" > ${out}\n'sh' '-c' 'echo "$0" > ${out}.2' 'it'\\''s'\n`);
    expect(m.read('/iid')).to.equal(`${meta.instanceId}\n`);
    expect(m.read('/iid.2')).to.equal("it's\n");
  });

  it('a failing bootcmd fails its module and the boot, and the later modules still run', async () => {
    const m = machine();
    const report = await boot1(m, '#cloud-config\nbootcmd: [exit 3]\nwrite_files: [{path: /etc/after, content: x}]\n');
    expect(report.ok).to.equal(false);
    expect(report.modules.slice(0, 2)).to.deep.equal([
      { name: 'bootcmd', ok: false, detail: 'the bootcmd script exited 3' },
      { name: 'write_files', ok: true, detail: 'wrote /etc/after' },
    ]);
    expect(report.errors).to.deep.equal(['bootcmd: the bootcmd script exited 3']);
    expect(m.read('/etc/after')).to.equal('x');
  });

  it('runcmd is one script without set -e: a failing command does not stop the next ones', async () => {
    const m = machine();
    const marks = m.file('/marks');
    const report = await boot1(m, `#cloud-config\nruncmd:\n- echo one >> ${marks}\n- 'false'\n- [sh, -c, "echo two >> ${marks}"]\n`);
    expect(report.ok, report.errors.join('\n')).to.equal(true);
    expect(m.read('/marks')).to.equal('one\ntwo\n');
    expect(m.read(`${scriptsDir}/runcmd`)).to.equal(`#!/bin/sh\necho one >> ${marks}\nfalse\n'sh' '-c' 'echo two >> ${marks}'\n`);
    expect(modeOf(m.file(`${scriptsDir}/runcmd`))).to.equal('0700');
  });

  it('runcmd whose script exits non-zero fails scripts_user after every script ran, and the boot', async () => {
    const m = machine();
    const marks = m.file('/marks');
    const userData = mime([
      { type: 'text/cloud-config', body: `#cloud-config\nruncmd:\n- echo runcmd >> ${marks}\n- exit 4\n` },
      { type: 'text/x-shellscript', headers: ['Content-Disposition: attachment; filename="zz-last.sh"'], body: `#!/bin/sh\necho zz >> ${marks}\n` },
    ]);
    const report = await boot1(m, userData);
    expect(report.ok).to.equal(false);
    expect(m.read('/marks')).to.equal('runcmd\nzz\n');
    expect(report.modules.find((x) => x.name === 'runcmd')).to.deep.include({ ok: true });
    expect(report.modules.find((x) => x.name === 'scripts_user')).to.deep.equal({
      name: 'scripts_user',
      ok: false,
      detail: '1 of 2 scripts failed: runcmd (exit 4)',
    });
    expect(report.errors).to.deep.equal(['scripts_user: 1 of 2 scripts failed: runcmd (exit 4)']);
    expect(names(report).at(-1)).to.equal('final_message');
  });

  it('runcmd that is no list fails its module', async () => {
    const report = await boot1(machine(), '#cloud-config\nruncmd: 5\n');
    expect(report.errors).to.deep.equal(['runcmd: runcmd must be a list, not number']);
  });

  it('write_files: encodings, permissions, parent directories, append, defer', async () => {
    const m = machine();
    mkdirSync(m.file('/etc/app'), { recursive: true });
    writeFileSync(m.file('/etc/app/log'), 'old\n');
    const gz = (s: string) => gzipSync(s).toString('base64');
    const report = await boot1(
      m,
      [
        '#cloud-config',
        'write_files:',
        `- {path: /etc/app/b64, encoding: b64, content: ${Buffer.from('b64 text').toString('base64')}}`,
        `- {path: /etc/app/base64, encoding: base64, content: ${Buffer.from('base64 text').toString('base64')}}`,
        `- {path: /etc/app/gzip, encoding: gzip, content: !!binary ${gz('gzip text')}}`,
        ...['gz+b64', 'gzip+base64', 'gz+base64', 'gzip+b64'].map((e, i) => `- {path: /etc/app/gzb64-${i}, encoding: ${e}, content: ${gz(e)}}`),
        '- {path: /etc/app/text, encoding: text/plain, content: plain}',
        '- {path: /etc/app/odd, encoding: rot13, content: as is}',
        "- {path: /etc/app/quoted, permissions: '0640', content: q}",
        '- {path: /etc/app/unquoted, permissions: 0600, content: u}',
        '- {path: /deep/new/dir/default, content: d}',
        '- {path: /etc/app/log, append: true, content: "new\\n"}',
        '- {path: /etc/app/deferred, defer: true, content: later}',
        '- {content: no path}',
      ].join('\n'),
    );
    expect(report.ok, report.errors.join('\n')).to.equal(true);
    expect(m.read('/etc/app/b64')).to.equal('b64 text');
    expect(m.read('/etc/app/base64')).to.equal('base64 text');
    expect(m.read('/etc/app/gzip')).to.equal('gzip text');
    ['gz+b64', 'gzip+base64', 'gz+base64', 'gzip+b64'].forEach((e, i) => expect(m.read(`/etc/app/gzb64-${i}`)).to.equal(e));
    expect(m.read('/etc/app/text')).to.equal('plain');
    expect(m.read('/etc/app/odd')).to.equal('as is');
    expect(m.lines.some((l) => l.includes('Unknown write_files encoding "rot13"'))).to.equal(true);
    expect(modeOf(m.file('/etc/app/quoted'))).to.equal('0640');
    expect(modeOf(m.file('/etc/app/unquoted'))).to.equal('0600');
    expect(modeOf(m.file('/deep/new/dir/default'))).to.equal('0644');
    expect(modeOf(m.file('/deep/new/dir'))).to.equal('0755');
    expect(m.read('/etc/app/log')).to.equal('old\nnew\n');
    expect(m.read('/etc/app/deferred')).to.equal('later');
    expect(names(report)).to.deep.equal(['write_files', 'write_files_deferred', 'final_message']);
    expect(m.lines.filter((l) => l.startsWith('Skipping write_files'))).to.deep.equal(['Skipping write_files entry 14: it has no path']);
    expect(m.calls).to.deep.equal([]);
  });

  it('write_files: an owner other than root is set with chown; a failed chown fails the module at that entry', async () => {
    const m = machine((argv) => (argv[1] === 'nobody:nogroup' ? 1 : 0));
    const report = await boot1(
      m,
      '#cloud-config\nwrite_files:\n- {path: /home/kube/a, owner: "kube:kube", content: a}\n- {path: /b, owner: "nobody:nogroup", content: b}\n- {path: /c, content: c}\n',
    );
    expect(m.calls.map((c) => c.argv)).to.deep.equal([
      ['chown', 'kube:kube', m.file('/home/kube/a')],
      ['chown', 'nobody:nogroup', m.file('/b')],
    ]);
    expect(report.errors).to.deep.equal([`write_files: chown nobody:nogroup ${m.file('/b')} exited 1`]);
    expect(existsSync(m.file('/c'))).to.equal(false);
  });

  it('write_files paths cannot climb out of the root', async () => {
    const m = machine();
    await boot1(m, '#cloud-config\nwrite_files: [{path: ../../escape, content: x}]\n');
    expect(m.read('/escape')).to.equal('x');
  });

  it('users_groups: groups, then users with useradd, passwd -l, sudo rules and authorized keys; existing users are kept', async () => {
    const m = machine();
    mkdirSync(m.file('/etc'), { recursive: true });
    writeFileSync(m.file('/etc/passwd'), 'root:x:0:0:root:/root:/bin/bash\nubuntu:x:1000:1000::/home/ubuntu:/bin/bash\n');
    writeFileSync(m.file('/etc/group'), 'root:x:0:\nwheel:x:10:\n');
    const report = await boot1(
      m,
      [
        '#cloud-config',
        'groups: [admins, {ops: [ubuntu, ghost]}]',
        'users:',
        '- default',
        '- name: kube',
        '  gecos: Kube Admin',
        '  groups: [docker, wheel]',
        '  shell: /bin/bash',
        '  uid: 1500',
        '  sudo: ALL=(ALL) NOPASSWD:ALL',
        '  ssh_authorized_keys: [ssh-ed25519 AAAAkey1 a@b, ssh-ed25519 AAAAkey2 c@d]',
        '- name: ubuntu',
        '  lock_passwd: false',
        "  sudo: ['ALL=(ALL) ALL', 'ALL=(root) NOPASSWD: /bin/true']",
        '- {name: svc, system: true, lock_passwd: false}',
      ].join('\n'),
    );
    expect(report.ok, report.errors.join('\n')).to.equal(true);
    expect(m.calls.map((c) => c.argv)).to.deep.equal([
      ['groupadd', 'admins'],
      ['groupadd', 'ops'],
      ['usermod', '-a', '-G', 'ops', 'ubuntu'],
      ['groupadd', 'docker'],
      ['useradd', 'kube', '--comment', 'Kube Admin', '--groups', 'docker,wheel', '--shell', '/bin/bash', '--uid', '1500', '-m'],
      ['passwd', '-l', 'kube'],
      ['chown', '-R', 'kube:', m.file('/home/kube/.ssh')],
      ['useradd', 'svc', '--system', '-M'],
    ]);
    expect(m.lines.some((l) => l.includes('Skipping member ghost of group ops'))).to.equal(true);
    expect(m.lines.some((l) => l.includes('Skipping the default user'))).to.equal(true);
    expect(m.read('/etc/sudoers.d/90-cloud-init-users')).to.match(
      /^#.*\n\n# User rules for kube\nkube ALL=\(ALL\) NOPASSWD:ALL\n\n# User rules for ubuntu\nubuntu ALL=\(ALL\) ALL\nubuntu ALL=\(root\) NOPASSWD: \/bin\/true\n$/,
    );
    expect(modeOf(m.file('/etc/sudoers.d/90-cloud-init-users'))).to.equal('0440');
    expect(m.read('/home/kube/.ssh/authorized_keys')).to.equal('ssh-ed25519 AAAAkey1 a@b\nssh-ed25519 AAAAkey2 c@d\n');
    expect(modeOf(m.file('/home/kube/.ssh'))).to.equal('0700');
    expect(modeOf(m.file('/home/kube/.ssh/authorized_keys'))).to.equal('0600');
    expect(existsSync(m.file('/etc/passwd')) && m.read('/etc/passwd')).to.not.contain('kube');
  });

  it('users_groups: a failed useradd fails the module', async () => {
    const m = machine((argv) => (argv[0] === 'useradd' ? 9 : 0));
    const report = await boot1(m, '#cloud-config\nusers: [{name: kube}]\n');
    expect(report.errors).to.deep.equal(['users_groups: useradd kube exited 9']);
  });

  it('ntp, packages, apt and yum repositories are recorded and not run', async () => {
    const m = machine();
    const report = await boot1(
      m,
      [
        '#cloud-config',
        'ntp: {enabled: true, ntp_client: chrony, servers: [169.254.169.123]}',
        'packages: [containerd, [kubelet, 1.34.4-1.1]]',
        'package_update: true',
        'package_upgrade: false',
        'apt: {sources: {k8s: {source: "deb https://pkgs.k8s.io/ /"}}}',
        'yum_repos: {k8s: {baseurl: "https://pkgs.k8s.io/", enabled: true}}',
      ].join('\n'),
    );
    expect(report.ok).to.equal(true);
    expect(m.calls).to.deep.equal([]);
    expect(report.recorded).to.deep.equal([
      { module: 'apt_configure', config: { apt: { sources: { k8s: { source: 'deb https://pkgs.k8s.io/ /' } } } } },
      { module: 'yum_add_repo', config: { yum_repos: { k8s: { baseurl: 'https://pkgs.k8s.io/', enabled: true } } } },
      { module: 'ntp', config: { ntp: { enabled: true, ntp_client: 'chrony', servers: ['169.254.169.123'] } } },
      {
        module: 'package_update_upgrade_install',
        config: { packages: ['containerd', ['kubelet', '1.34.4-1.1']], package_update: true, package_upgrade: false },
      },
    ]);
  });

  it('cloud-config parts merge: mappings merge, lists and scalars of a later part replace', async () => {
    const m = machine();
    const report = await boot1(
      m,
      mime([
        { type: 'text/cloud-config', body: '#cloud-config\nntp: {enabled: true, servers: [a]}\nruncmd: [one]\n' },
        { type: 'text/cloud-config', body: '#cloud-config\nntp: {servers: [b]}\nruncmd: [two]\n' },
      ]),
    );
    expect(report.recorded).to.deep.equal([{ module: 'ntp', config: { ntp: { enabled: true, servers: ['b'] } } }]);
    expect(m.read(`${scriptsDir}/runcmd`)).to.equal('#!/bin/sh\ntwo\n');
  });

  it('writes result.json and status.json as cloud-init does, and the output log', async () => {
    const m = machine();
    const report = await boot1(m, '#cloud-config\nbootcmd: [exit 1]\nruncmd: [exit 2]\nhostname: ignored\n');
    const result = JSON.parse(m.read('/run/cloud-init/result.json')) as unknown;
    expect(result).to.deep.equal({ v1: { datasource: 'DataSourceEc2Local', errors: report.errors } });
    expect(report.errors).to.have.length(2);
    const status = JSON.parse(m.read('/run/cloud-init/status.json')) as { v1: Record<string, { errors: string[]; start: number | null; finished: number | null } | string | null> };
    expect(Object.keys(status.v1).sort()).to.deep.equal(['datasource', 'init', 'init-local', 'modules-config', 'modules-final', 'modules-init', 'stage'].sort());
    expect(status.v1.datasource).to.equal('DataSourceEc2Local');
    expect(status.v1.stage).to.equal(null);
    const stage = (name: string) => status.v1[name] as { errors: string[]; start: number | null; finished: number | null };
    expect(stage('init').errors).to.deep.equal(['bootcmd: the bootcmd script exited 1']);
    expect(stage('modules-final').errors).to.deep.equal(['scripts_user: 1 of 1 scripts failed: runcmd (exit 2)']);
    for (const name of ['init', 'modules-config', 'modules-final']) {
      expect(stage(name).start, name).to.be.a('number');
      expect(stage(name).finished, name).to.be.at.least(stage(name).start!);
    }
    expect(stage('modules-final').start).to.be.at.least(stage('init').finished!);
    expect(stage('init-local')).to.deep.equal({ errors: [], start: null, finished: null });
    const log = m.read('/var/log/cloud-init-output.log');
    expect(log.trim().split('\n')).to.deep.equal(m.lines);
    expect(log).to.contain('Ignoring hostname: the emulator does not implement them');
    expect(existsSync(m.file(`/var/lib/cloud/instances/${meta.instanceId}/boot-finished`))).to.equal(true);
  });

  it('an error part fails the boot visibly; the other parts still run', async () => {
    const m = machine();
    const report = await boot1(m, mime([
      { type: 'text/plain', body: 'not user data' },
      { type: 'text/cloud-config', body: '#cloud-config\nwrite_files: [{path: /ok, content: x}]\n' },
    ]));
    expect(report.ok).to.equal(false);
    expect(report.errors).to.have.length(1);
    expect(report.errors[0]).to.match(/^user_data: \[USER_DATA_UNHANDLED\] Unhandled non-multipart userdata in part-001/);
    expect(m.read('/ok')).to.equal('x');
    expect(JSON.parse(m.read('/run/cloud-init/result.json'))).to.deep.equal({ v1: { datasource: 'DataSourceEc2Local', errors: report.errors } });
  });

  it('empty user data boots with nothing but the final message', async () => {
    const m = machine();
    const report = await boot1(m, '');
    expect(report).to.deep.include({ ok: true, errors: [], recorded: [] });
    expect(names(report)).to.deep.equal(['final_message']);
  });
});
