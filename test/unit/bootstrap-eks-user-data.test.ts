/**
 * The EKS node user data (src/bootstrap/eks-user-data.ts): bootstrap.sh in #cloud-config for
 * Amazon Linux 2, a MIME multipart with a nodeadm NodeConfig for Amazon Linux 2023. The AL2 command
 * line is run by bash against a stand-in bootstrap.sh that records its arguments, so quoting is
 * proven by what a shell makes of it, not by reading it.
 */
import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parse } from 'yaml';
import { isCapflowError } from '../../src/core/errors.js';
import {
  bootstrapCommand,
  eksNodeForm,
  mimeMultipart,
  renderAl2UserData,
  renderEksUserData,
  renderNodeadmUserData,
  shellQuote,
  type EKSConfigSpec,
  type EksClusterInfo,
} from '../../src/bootstrap/eks-user-data.js';

const CA = Buffer.from('-----BEGIN CERTIFICATE-----\nMIIC...\n-----END CERTIFICATE-----\n').toString('base64');
const CLUSTER: EksClusterInfo = { name: 'eks-pools', endpoint: 'https://0123ABCD.gr7.eu-west-1.eks.amazonaws.com', certificateAuthorityData: CA, serviceCidr: '172.20.0.0/16' };
const ORIGIN = { kind: 'EKSConfig', name: 'eks-pools-general', path: ['spec'] };

/** The runcmd list of an AL2 user data. */
function runcmd(userData: string): string[] {
  expect(userData.startsWith('#cloud-config\n')).to.equal(true);
  return (parse(userData) as { runcmd: string[] }).runcmd;
}

/** A MIME multipart document's parts: headers (lower-cased names) and body. */
function mimeParts(text: string): Array<{ headers: Record<string, string>; body: string }> {
  const [head, ...rest] = text.split('\n\n');
  const headers = Object.fromEntries(head!.split('\n').map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]));
  expect(headers['mime-version']).to.equal('1.0');
  const m = /^multipart\/mixed; boundary="([^"]+)"$/.exec(headers['content-type'] ?? '');
  expect(m, 'a multipart/mixed Content-Type with a boundary').to.not.equal(null);
  const boundary = m![1]!;
  const body = rest.join('\n\n');
  const lines = body.split('\n');
  expect(lines.filter((l) => l === `--${boundary}--`), 'one closing delimiter').to.have.length(1);
  expect(lines.at(-2)).to.equal(`--${boundary}--`);
  const parts: Array<{ headers: Record<string, string>; body: string }> = [];
  let current: string[] | undefined;
  for (const line of lines) {
    if (line === `--${boundary}` || line === `--${boundary}--`) {
      if (current) {
        const i = current.indexOf('');
        const h = Object.fromEntries(current.slice(0, i).map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]));
        parts.push({ headers: h, body: current.slice(i + 1).join('\n') });
      }
      current = line === `--${boundary}` ? [] : undefined;
      continue;
    }
    current?.push(line);
  }
  return parts;
}

async function refusal(p: Promise<unknown>): Promise<{ code: string; message: string }> {
  const err: unknown = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(isCapflowError(err), String(err)).to.equal(true);
  return err as { code: string; message: string };
}

describe('bootstrap: EKS node user data', () => {
  describe('which form', () => {
    it('is AL2023 when nodeType says al2023 or the AMI lookup is an AmazonLinux2023 one, else AL2', () => {
      expect(eksNodeForm({})).to.equal('al2');
      expect(eksNodeForm({}, 'AmazonLinux')).to.equal('al2');
      expect(eksNodeForm({}, 'AmazonLinuxGPU')).to.equal('al2');
      expect(eksNodeForm({}, 'AmazonLinux2023')).to.equal('al2023');
      expect(eksNodeForm({}, 'AmazonLinux2023GPU')).to.equal('al2023');
      expect(eksNodeForm({ nodeType: 'al2023' })).to.equal('al2023');
      expect(eksNodeForm({ nodeType: 'al2023' }, 'AmazonLinux')).to.equal('al2023');
    });
  });

  describe('Amazon Linux 2: /etc/eks/bootstrap.sh', () => {
    const spec: EKSConfigSpec = {
      kubeletExtraArgs: { 'node-labels': 'capflow.io/pool=general', 'max-pods': '58' },
      containerRuntime: 'containerd',
      dnsClusterIP: '172.20.0.10',
      apiRetryAttempts: 5,
      pauseContainer: { accountNumber: '602401143452', version: '3.9' },
      useMaxPods: false,
      preBootstrapCommands: ['echo pre > /tmp/pre'],
      postBootstrapCommands: ['echo post > /tmp/post'],
    };

    it('runs the pre commands, bootstrap.sh with the cluster and every flag, then the post commands', async () => {
      const cmds = runcmd(await renderAl2UserData({ spec, cluster: CLUSTER, origin: ORIGIN }));
      expect(cmds).to.have.length(3);
      expect(cmds[0]).to.equal('echo pre > /tmp/pre');
      expect(cmds[2]).to.equal('echo post > /tmp/post');
      expect(cmds[1]).to.equal(
        [
          '/etc/eks/bootstrap.sh eks-pools',
          `--b64-cluster-ca ${CA}`,
          `--apiserver-endpoint ${CLUSTER.endpoint}`,
          `--kubelet-extra-args '--max-pods=58 --node-labels=capflow.io/pool=general'`,
          '--container-runtime containerd',
          '--service-ipv4-cidr 172.20.0.0/16',
          '--use-max-pods false',
          '--aws-api-retry-attempts 5',
          '--pause-container-account 602401143452',
          '--pause-container-version 3.9',
          '--dns-cluster-ip 172.20.0.10',
        ].join(' '),
      );
    });

    it('passes the IPv6 service CIDR and family instead of the IPv4 one, and the docker config quoted', async () => {
      const cmd = bootstrapCommand({ serviceIPV6Cidr: 'fd00:10:96::/112', dockerConfigJson: '{"bip": "10.1.0.1/16", "log-driver": "json-file"}' }, CLUSTER);
      expect(cmd).to.include('--ip-family ipv6 --service-ipv6-cidr fd00:10:96::/112');
      expect(cmd).to.not.include('--service-ipv4-cidr');
      expect(cmd).to.include(`--docker-config-json '{"bip": "10.1.0.1/16", "log-driver": "json-file"}'`);
    });

    it('writes files, users, ntp, disks and mounts as cloud-init modules', async () => {
      const text = await renderAl2UserData({
        spec: {
          files: [
            { path: '/etc/a', content: 'plain', permissions: '0644' },
            { path: '/etc/b', contentFrom: { secret: { name: 'extra', key: 'b' } }, owner: 'root:root' },
          ],
          users: [{ name: 'ops', sshAuthorizedKeys: ['ssh-ed25519 AAAA ops'], sudo: 'ALL=(ALL) NOPASSWD:ALL' }],
          ntp: { enabled: true, servers: ['169.254.169.123'] },
          diskSetup: { partitions: [{ device: '/dev/nvme1n1', layout: true }], filesystems: [{ device: '/dev/nvme1n1', filesystem: 'xfs', label: 'data' }] },
          mounts: [['LABEL=data', '/data']],
        },
        cluster: CLUSTER,
        resolveSecret: (ref) => (ref.name === 'extra' && ref.key === 'b' ? 'from a secret' : undefined),
      });
      const doc = parse(text) as Record<string, unknown>;
      expect(doc.write_files).to.deep.equal([
        { path: '/etc/a', permissions: '0644', content: 'plain' },
        { path: '/etc/b', owner: 'root:root', content: 'from a secret' },
      ]);
      expect(doc.users).to.deep.equal([{ name: 'ops', sudo: 'ALL=(ALL) NOPASSWD:ALL', ssh_authorized_keys: ['ssh-ed25519 AAAA ops'] }]);
      expect(doc.ntp).to.deep.equal({ enabled: true, servers: ['169.254.169.123'] });
      expect(doc.disk_setup).to.deep.equal({ '/dev/nvme1n1': { layout: true } });
      expect(doc.fs_setup).to.deep.equal([{ label: 'data', filesystem: 'xfs', device: '/dev/nvme1n1' }]);
      expect(doc.mounts).to.deep.equal([['LABEL=data', '/data']]);
    });

    it('refuses a file from a Secret that is not there, naming the field and not the value', async () => {
      const err = await refusal(renderAl2UserData({ spec: { files: [{ path: '/x', contentFrom: { secret: { name: 'nope', key: 'k' } } }] }, cluster: CLUSTER, origin: ORIGIN }));
      expect(err.code).to.equal('BOOTSTRAP_SECRET_NOT_FOUND');
      expect(err.message).to.include('EKSConfig/eks-pools-general spec.files[0].contentFrom.secret');
    });

    it('refuses line breaks in kubelet arguments (bootstrap.sh writes them into a systemd drop-in)', async () => {
      const err = await refusal(renderAl2UserData({ spec: { kubeletExtraArgs: { 'node-labels': 'a=b\nExecStartPre=/bin/evil' } }, cluster: CLUSTER, origin: ORIGIN }));
      expect(err.code).to.equal('EKS_KUBELET_ARG_INVALID');
      expect(err.message).to.include('spec.kubeletExtraArgs');
      expect(err.message).to.not.include('evil');
    });

    describe('run by bash', function () {
      this.timeout(20_000);
      let dir: string;
      before(() => {
        dir = mkdtempSync(path.join(os.tmpdir(), 'capflow-eks-ud-'));
      });
      after(() => rmSync(dir, { recursive: true, force: true }));

      /** The script cloud-init makes of runcmd (each string item a line of a sh script). */
      function runcmdScript(userData: string): string {
        return ['#!/bin/sh', ...runcmd(userData), ''].join('\n');
      }

      it('is a script bash accepts (bash -n)', async () => {
        const script = path.join(dir, 'syntax.sh');
        writeFileSync(script, runcmdScript(await renderAl2UserData({ spec: { ...spec, dockerConfigJson: `{"a": "it's"}` }, cluster: CLUSTER })));
        const res = spawnSync('bash', ['-n', script], { encoding: 'utf8' });
        expect(res.status, res.stderr).to.equal(0);
      });

      it('hands bootstrap.sh every hostile value as one argument, running none of it', async () => {
        const pwned = path.join(dir, 'pwned');
        const hostile = `x'; touch ${pwned}; echo '$(touch ${pwned})\`touch ${pwned}\` "${pwned}" \\ $HOME *`;
        // A stand-in for /etc/eks/bootstrap.sh that records its arguments, one per NUL.
        const argsFile = path.join(dir, 'args');
        const standIn = path.join(dir, 'bootstrap.sh');
        writeFileSync(standIn, `#!/bin/bash\nprintf '%s\\0' "$@" > ${shellQuote(argsFile)}\n`);
        chmodSync(standIn, 0o755);
        const userData = await renderEksUserData({
          spec: {
            boostrapCommandOverride: standIn,
            kubeletExtraArgs: { 'node-labels': hostile },
            dnsClusterIP: hostile,
            dockerConfigJson: `{"x": "${hostile.replace(/["\\]/g, '\\$&')}"}`,
          },
          cluster: { ...CLUSTER, name: `eks; touch ${pwned}` },
        });
        const script = path.join(dir, 'runcmd.sh');
        writeFileSync(script, runcmdScript(userData));
        const res = spawnSync('bash', [script], { encoding: 'utf8', cwd: dir });
        expect(res.status, res.stderr).to.equal(0);
        expect(existsSync(pwned), 'nothing of the values ran').to.equal(false);
        const args = readFileSync(argsFile, 'utf8').split('\0').slice(0, -1);
        const flag = (name: string) => args[args.indexOf(name) + 1];
        expect(args[0]).to.equal(`eks; touch ${pwned}`);
        expect(flag('--kubelet-extra-args')).to.equal(`--node-labels=${hostile}`);
        expect(flag('--dns-cluster-ip')).to.equal(hostile);
        expect(JSON.parse(flag('--docker-config-json')!)).to.deep.equal({ x: hostile });
        expect(flag('--b64-cluster-ca')).to.equal(CA);
        expect(flag('--apiserver-endpoint')).to.equal(CLUSTER.endpoint);
      });
    });
  });

  describe('Amazon Linux 2023: nodeadm', () => {
    const spec: EKSConfigSpec = {
      kubeletExtraArgs: { 'node-labels': 'capflow.io/pool=burst', 'register-with-taints': 'capflow.io/burst=true:NoSchedule' },
      dnsClusterIP: '172.20.0.10',
      useMaxPods: false,
      preBootstrapCommands: ['echo pre > /tmp/pre'],
      files: [{ path: '/etc/motd', content: 'an EKS node\n' }],
    };

    it('is a MIME multipart: the pre commands as a script, the NodeConfig, then the cloud-config', async () => {
      const text = await renderEksUserData({ spec, cluster: CLUSTER, amiLookupType: 'AmazonLinux2023' });
      const parts = mimeParts(text);
      expect(parts.map((p) => p.headers['content-type'])).to.deep.equal(['text/x-shellscript; charset="us-ascii"', 'application/node.eks.aws', 'text/cloud-config']);
      expect(parts[0]!.body.split('\n')).to.deep.equal(['#!/bin/bash', 'set -o errexit', 'set -o pipefail', 'set -o nounset', 'echo pre > /tmp/pre']);
      expect((parse(parts[2]!.body) as { write_files: unknown }).write_files).to.deep.equal([{ path: '/etc/motd', content: 'an EKS node\n' }]);
    });

    it('has a node.eks.aws/v1alpha1 NodeConfig with the cluster, its service CIDR and the kubelet flags and config', async () => {
      const text = await renderNodeadmUserData({ spec, cluster: CLUSTER });
      const nodeConfig = parse(mimeParts(text).find((p) => p.headers['content-type'] === 'application/node.eks.aws')!.body) as Record<string, unknown>;
      expect(nodeConfig).to.deep.equal({
        apiVersion: 'node.eks.aws/v1alpha1',
        kind: 'NodeConfig',
        spec: {
          cluster: { name: 'eks-pools', apiServerEndpoint: CLUSTER.endpoint, certificateAuthority: CA, cidr: '172.20.0.0/16' },
          kubelet: {
            config: { clusterDNS: ['172.20.0.10'], maxPods: 110 },
            flags: ['--node-labels=capflow.io/pool=burst', '--register-with-taints=capflow.io/burst=true:NoSchedule'],
          },
        },
      });
    });

    it('is the NodeConfig alone for a bare EKSConfig, and takes the IPv6 service CIDR when given', async () => {
      const parts = mimeParts(await renderNodeadmUserData({ spec: { serviceIPV6Cidr: 'fd00:10:96::/112' }, cluster: CLUSTER }));
      expect(parts).to.have.length(1);
      expect(parse(parts[0]!.body)).to.deep.equal({
        apiVersion: 'node.eks.aws/v1alpha1',
        kind: 'NodeConfig',
        spec: { cluster: { name: 'eks-pools', apiServerEndpoint: CLUSTER.endpoint, certificateAuthority: CA, cidr: 'fd00:10:96::/112' } },
      });
    });

    it('keeps a hostile kubelet value a YAML string', async () => {
      const hostile = `a: b --// "'{}[]#&*!|>%@\` $(id)`;
      const parts = mimeParts(await renderNodeadmUserData({ spec: { kubeletExtraArgs: { 'node-labels': hostile } }, cluster: CLUSTER }));
      expect((parse(parts[0]!.body) as { spec: { kubelet: { flags: string[] } } }).spec.kubelet.flags).to.deep.equal([`--node-labels=${hostile}`]);
    });

    it('picks another boundary when a part holds a line that starts with the default one', async () => {
      const text = await renderNodeadmUserData({ spec: { preBootstrapCommands: ['echo start', '--// is not a boundary here'] }, cluster: CLUSTER });
      const parts = mimeParts(text);
      expect(text).to.match(/boundary="==capflow-[0-9a-f]{32}=="/);
      expect(parts[0]!.body).to.include('--// is not a boundary here');
      expect(mimeMultipart([{ contentType: 'text/plain', body: 'x' }])).to.include('boundary="//"');
    });

    it('refuses the fields nodeadm has no place for, naming the field', async () => {
      for (const [field, value] of [
        ['dockerConfigJson', '{}'],
        ['boostrapCommandOverride', '/bin/true'],
        ['apiRetryAttempts', 3],
        ['pauseContainer', { accountNumber: '1', version: '3.9' }],
        ['postBootstrapCommands', ['echo post']],
        ['containerRuntime', 'dockerd'],
      ] as const) {
        const err = await refusal(renderEksUserData({ spec: { [field]: value }, cluster: CLUSTER, form: 'al2023', origin: ORIGIN }));
        expect(err.code, field).to.equal('EKS_FIELD_NOT_ON_AL2023');
        expect(err.message).to.include(`EKSConfig/eks-pools-general spec.${field}`);
        if (field === 'dockerConfigJson') expect(err.message).to.not.include('{}');
      }
      // containerd is what AL2023 runs: accepted.
      await renderEksUserData({ spec: { containerRuntime: 'containerd' }, cluster: CLUSTER, form: 'al2023' });
    });

    it('needs the cluster endpoint and CA (eks-control-plane made them)', async () => {
      const err = await refusal(renderNodeadmUserData({ spec: {}, cluster: { ...CLUSTER, endpoint: '' } }));
      expect(err.code).to.equal('CONTROL_PLANE_MISSING');
    });
  });
});
