import { expect } from 'chai';
import { parse, parseAllDocuments } from 'yaml';
import { bootstrapSpecProblems, CLOUD_CONFIG_HEADER, renderUserData, type ClusterCertificates, type UserDataInput } from '../../src/bootstrap/cloud-config.js';
import { kubeadmApiVersion, kubeadmDocuments, renderKubeadmConfig, type KubeadmRenderInput } from '../../src/bootstrap/kubeadm-config.js';
import type { ClusterPki } from '../../src/bootstrap/pki.js';
import { isCapflowError } from '../../src/core/errors.js';
import type { KubeadmConfigSpec } from '../../src/spec/index.js';

const TOKEN = 'abcdef.0123456789abcdef';
const HASH = `sha256:${'a'.repeat(64)}`;
const KCP = { kind: 'KubeadmControlPlane', name: 'dev-control-plane', path: ['spec', 'kubeadmConfigSpec'] };

function input(over: Partial<KubeadmRenderInput> = {}): KubeadmRenderInput {
  return {
    role: 'init',
    spec: {},
    clusterName: 'dev',
    kubernetesVersion: 'v1.31.4',
    controlPlaneEndpoint: { host: 'dev-api.example.com', port: 6443 },
    clusterNetwork: { pods: { cidrBlocks: ['192.168.0.0/16'] }, services: { cidrBlocks: ['10.96.0.0/12'] } },
    bootstrapToken: TOKEN,
    caCertHashes: [HASH],
    ...over,
  };
}

type Doc = Record<string, unknown>;

/** The value at a path of nested objects and lists. */
function at(value: unknown, ...path: Array<string | number>): unknown {
  return path.reduce<unknown>((v, seg) => (v === null || typeof v !== 'object' ? undefined : (v as Record<string | number, unknown>)[seg]), value);
}

function docs(value: unknown): Doc[] {
  return Array.isArray(value) ? (value as Doc[]) : [];
}

function doc(over: Partial<KubeadmRenderInput>, kind: string): Doc {
  const found = kubeadmDocuments(input(over)).find((d) => d.kind === kind);
  if (!found) throw new Error(`no ${kind}`);
  return found;
}

async function userData(over: Partial<UserDataInput> = {}): Promise<Doc> {
  const text = await renderUserData({ ...input(), ...over });
  expect(text.startsWith(CLOUD_CONFIG_HEADER)).to.equal(true);
  return parse(text.slice(CLOUD_CONFIG_HEADER.length), { version: '1.1' }) as Doc;
}

async function refusal(fn: () => unknown): Promise<{ code: string; message: string; details?: Record<string, unknown> }> {
  try {
    await fn();
  } catch (err) {
    if (!isCapflowError(err)) throw err;
    expect(err.exitCode, 'refusals are input errors (exit 2)').to.equal(2);
    return { code: err.code, message: err.message, ...(err.details ? { details: err.details } : {}) };
  }
  throw new Error('expected a refusal');
}

describe('bootstrap render', () => {
  describe('kubeadm API version', () => {
    const cases: Array<[string, string]> = [
      ['v1.31.4', 'kubeadm.k8s.io/v1beta4'],
      ['1.34.0', 'kubeadm.k8s.io/v1beta4'],
      ['v1.31.0-rc.1', 'kubeadm.k8s.io/v1beta4'],
      ['v1.30.9', 'kubeadm.k8s.io/v1beta3'],
      ['v1.22.0', 'kubeadm.k8s.io/v1beta3'],
    ];
    for (const [version, api] of cases) {
      it(`Kubernetes ${version} renders ${api}`, () => expect(kubeadmApiVersion(version)).to.equal(api));
    }

    it('Kubernetes older than 1.22 is refused, as CABPK refuses it', async () => {
      expect((await refusal(() => kubeadmApiVersion('v1.21.3'))).code).to.equal('BOOTSTRAP_VERSION_UNSUPPORTED');
      expect((await refusal(() => kubeadmApiVersion('latest'))).code).to.equal('BOOTSTRAP_VERSION_INVALID');
    });
  });

  describe('ClusterConfiguration', () => {
    it('takes name, version, endpoint and networks from the cluster, over the spec', () => {
      const spec: KubeadmConfigSpec = { clusterConfiguration: { clusterName: 'other', kubernetesVersion: 'v1.20.0', networking: { podSubnet: '1.0.0.0/8', dnsDomain: 'x.local' } } };
      const network = { pods: { cidrBlocks: ['192.168.0.0/16', 'fd00::/104'] }, services: { cidrBlocks: ['10.96.0.0/12'] }, serviceDomain: 'cluster.test' };
      const c = doc({ spec, clusterNetwork: network }, 'ClusterConfiguration');
      expect(c).to.deep.include({ apiVersion: 'kubeadm.k8s.io/v1beta4', clusterName: 'dev', kubernetesVersion: 'v1.31.4', controlPlaneEndpoint: 'dev-api.example.com:6443' });
      expect(c.networking).to.deep.equal({ podSubnet: '192.168.0.0/16,fd00::/104', serviceSubnet: '10.96.0.0/12', dnsDomain: 'cluster.test' });
    });

    it("keeps the spec's own controlPlaneEndpoint, brackets an IPv6 host, and refuses a cluster without one", async () => {
      expect(doc({ spec: { clusterConfiguration: { controlPlaneEndpoint: 'vip.lab:8443' } } }, 'ClusterConfiguration').controlPlaneEndpoint).to.equal('vip.lab:8443');
      expect(doc({ controlPlaneEndpoint: { host: 'fd00::10', port: 6443 } }, 'ClusterConfiguration').controlPlaneEndpoint).to.equal('[fd00::10]:6443');
      expect((await refusal(() => kubeadmDocuments(input({ controlPlaneEndpoint: undefined })))).code).to.equal('BOOTSTRAP_NO_CONTROL_PLANE_ENDPOINT');
      expect((await refusal(() => kubeadmDocuments(input({ role: 'worker-join', controlPlaneEndpoint: { host: '', port: 6443 } })))).code).to.equal(
        'BOOTSTRAP_NO_CONTROL_PLANE_ENDPOINT',
      );
    });

    it('converts extraArgs maps to v1beta4 lists sorted by name, for every component and etcd', () => {
      const spec: KubeadmConfigSpec = {
        clusterConfiguration: {
          apiServer: { extraArgs: { 'cloud-provider': 'external', 'audit-log-maxage': '30' }, certSANs: ['10.0.0.1'] },
          controllerManager: { extraArgs: { 'node-monitor-grace-period': '10s' } },
          scheduler: { extraArgs: { 'bind-address': '0.0.0.0' } },
          etcd: { local: { dataDir: '/var/lib/etcddisk/etcd', extraArgs: { 'quota-backend-bytes': '8589934592' } } },
        },
      };
      const c = doc({ spec }, 'ClusterConfiguration');
      expect(c.apiServer).to.deep.equal({
        extraArgs: [
          { name: 'audit-log-maxage', value: '30' },
          { name: 'cloud-provider', value: 'external' },
        ],
        certSANs: ['10.0.0.1'],
      });
      expect(at(c, 'controllerManager', 'extraArgs')).to.deep.equal([{ name: 'node-monitor-grace-period', value: '10s' }]);
      expect(at(c, 'scheduler', 'extraArgs')).to.deep.equal([{ name: 'bind-address', value: '0.0.0.0' }]);
      expect(c.etcd).to.deep.equal({ local: { dataDir: '/var/lib/etcddisk/etcd', extraArgs: [{ name: 'quota-backend-bytes', value: '8589934592' }] } });
    });

    it('keeps extraArgs as maps and timeoutForControlPlane in place for v1beta3', () => {
      const spec: KubeadmConfigSpec = { clusterConfiguration: { apiServer: { extraArgs: { 'cloud-provider': 'external' }, timeoutForControlPlane: '8m0s' } } };
      const [cluster, init] = kubeadmDocuments(input({ spec, kubernetesVersion: 'v1.30.2' })) as Doc[];
      expect(cluster!.apiVersion).to.equal('kubeadm.k8s.io/v1beta3');
      expect(cluster!.apiServer).to.deep.equal({ extraArgs: { 'cloud-provider': 'external' }, timeoutForControlPlane: '8m0s' });
      expect(init!.timeouts).to.equal(undefined);
    });

    it('moves timeoutForControlPlane to timeouts and certificate validity days to durations for v1beta4', () => {
      const spec: KubeadmConfigSpec = {
        clusterConfiguration: { apiServer: { timeoutForControlPlane: '8m0s' }, certificateValidityPeriodDays: 365, caCertificateValidityPeriodDays: 3650, encryptionAlgorithm: 'ECDSA-P256' },
      };
      const [cluster, init] = kubeadmDocuments(input({ spec })) as Doc[];
      expect(cluster!.apiServer).to.equal(undefined);
      expect(cluster).to.deep.include({ certificateValidityPeriod: '8760h0m0s', caCertificateValidityPeriod: '87600h0m0s', encryptionAlgorithm: 'ECDSA-P256' });
      expect(init!.timeouts).to.deep.equal({ controlPlaneComponentHealthCheck: '8m0s' });
      const v3 = kubeadmDocuments(input({ spec, kubernetesVersion: 'v1.29.0' }))[0] as Doc;
      expect(v3).to.not.have.any.keys('certificateValidityPeriod', 'caCertificateValidityPeriod', 'encryptionAlgorithm');
    });

    const gates: Array<[string, Record<string, boolean> | undefined, Record<string, boolean> | undefined]> = [
      ['v1.31.4', undefined, { ControlPlaneKubeletLocalMode: true }],
      ['v1.35.1', { EtcdLearnerMode: true }, { EtcdLearnerMode: true, ControlPlaneKubeletLocalMode: true }],
      ['v1.33.0', { ControlPlaneKubeletLocalMode: false }, { ControlPlaneKubeletLocalMode: false }],
      ['v1.36.0', undefined, undefined],
      ['v1.30.0', undefined, undefined],
    ];
    for (const [version, spec, expected] of gates) {
      it(`on ${version} with feature gates ${JSON.stringify(spec)}, KubeadmControlPlane's default gives ${JSON.stringify(expected)}`, () => {
        expect(doc({ kubernetesVersion: version, spec: { clusterConfiguration: spec ? { featureGates: spec } : {} } }, 'ClusterConfiguration').featureGates).to.deep.equal(expected);
      });
    }
  });

  describe('InitConfiguration', () => {
    it("converts kubeletExtraArgs and keeps the node name template for cloud-init's jinja", () => {
      const spec: KubeadmConfigSpec = { initConfiguration: { nodeRegistration: { name: '{{ ds.meta_data.local_hostname }}', kubeletExtraArgs: { 'cloud-provider': 'external' }, taints: [] } } };
      const init = doc({ spec }, 'InitConfiguration');
      expect(init.nodeRegistration).to.deep.equal({ name: '{{ ds.meta_data.local_hostname }}', taints: [], kubeletExtraArgs: [{ name: 'cloud-provider', value: 'external' }] });
      expect(renderKubeadmConfig(input({ spec }))).to.include('name: "{{ ds.meta_data.local_hostname }}"');
    });

    it("adds the caller's bootstrap token (with its TTL) after the spec's own, once", () => {
      const own = { token: 'zzzzzz.zzzzzzzzzzzzzzzz', ttl: '1h0m0s' };
      expect(doc({ spec: { initConfiguration: { bootstrapTokens: [own] } }, bootstrapTokenTtl: '15m0s' }, 'InitConfiguration').bootstrapTokens).to.deep.equal([own, { token: TOKEN, ttl: '15m0s' }]);
      expect(doc({ spec: { initConfiguration: { bootstrapTokens: [{ token: TOKEN }] } } }, 'InitConfiguration').bootstrapTokens).to.deep.equal([{ token: TOKEN }]);
      expect(doc({ bootstrapToken: undefined }, 'InitConfiguration')).to.not.have.key('bootstrapTokens');
    });

    it('carries the certificate key when the control planes are to fetch the uploaded certificates', () => {
      expect(doc({ certificateKey: 'f'.repeat(64) }, 'InitConfiguration').certificateKey).to.equal('f'.repeat(64));
    });

    it('renders ClusterConfiguration then InitConfiguration, and ignores the spec\'s joinConfiguration', () => {
      const parsed = parseAllDocuments(renderKubeadmConfig(input({ spec: { joinConfiguration: { controlPlane: {} } } }))).map((d) => d.toJS() as Doc);
      expect(parsed.map((d) => d.kind)).to.deep.equal(['ClusterConfiguration', 'InitConfiguration']);
    });
  });

  describe('JoinConfiguration', () => {
    it('a worker discovers the API by token, endpoint and CA hash, with no controlPlane', () => {
      const join = doc({ role: 'worker-join', spec: { joinConfiguration: { nodeRegistration: { kubeletExtraArgs: { 'node-labels': 'a=b' } } } } }, 'JoinConfiguration');
      expect(join).to.deep.equal({
        apiVersion: 'kubeadm.k8s.io/v1beta4',
        kind: 'JoinConfiguration',
        nodeRegistration: { kubeletExtraArgs: [{ name: 'node-labels', value: 'a=b' }] },
        discovery: { bootstrapToken: { apiServerEndpoint: 'dev-api.example.com:6443', token: TOKEN, caCertHashes: [HASH] } },
      });
    });

    it('a control plane replica joins with controlPlane.localAPIEndpoint (empty unless the spec sets it) and the certificate key', () => {
      expect(doc({ role: 'control-plane-join' }, 'JoinConfiguration').controlPlane).to.deep.equal({ localAPIEndpoint: {} });
      const spec: KubeadmConfigSpec = { joinConfiguration: { controlPlane: { localAPIEndpoint: { advertiseAddress: '10.0.0.5', bindPort: 6443 } } } };
      expect(doc({ role: 'control-plane-join', spec, certificateKey: 'e'.repeat(64) }, 'JoinConfiguration').controlPlane).to.deep.equal({
        localAPIEndpoint: { advertiseAddress: '10.0.0.5', bindPort: 6443 },
        certificateKey: 'e'.repeat(64),
      });
    });

    it("keeps the spec's discovery values, and skips CA verification only when no hash is known (as CABPK)", () => {
      const spec: KubeadmConfigSpec = { joinConfiguration: { discovery: { bootstrapToken: { apiServerEndpoint: '10.0.10.100:6443', token: 'yyyyyy.yyyyyyyyyyyyyyyy' } } } };
      expect(at(doc({ role: 'worker-join', spec }, 'JoinConfiguration'), 'discovery', 'bootstrapToken')).to.deep.equal({
        apiServerEndpoint: '10.0.10.100:6443',
        token: 'yyyyyy.yyyyyyyyyyyyyyyy',
        caCertHashes: [HASH],
      });
      expect(at(doc({ role: 'worker-join', caCertHashes: [] }, 'JoinConfiguration'), 'discovery', 'bootstrapToken')).to.include({ unsafeSkipCAVerification: true });
    });

    it('moves discovery.timeout to timeouts.tlsBootstrap for v1beta4 (CABPK) and keeps it for v1beta3', () => {
      const spec: KubeadmConfigSpec = { joinConfiguration: { discovery: { timeout: '10m0s' } } };
      const v4 = doc({ role: 'worker-join', spec }, 'JoinConfiguration');
      expect(v4.timeouts).to.deep.equal({ tlsBootstrap: '10m0s' });
      expect(v4.discovery).to.not.have.key('timeout');
      const v3 = doc({ role: 'worker-join', spec, kubernetesVersion: 'v1.30.1' }, 'JoinConfiguration');
      expect(at(v3, 'discovery', 'timeout')).to.equal('10m0s');
      expect(v3).to.not.have.key('timeouts');
    });

    it('refuses a join without any bootstrap token', async () => {
      expect((await refusal(() => kubeadmDocuments(input({ role: 'worker-join', bootstrapToken: undefined })))).code).to.equal('BOOTSTRAP_TOKEN_MISSING');
    });

    it('refuses a worker whose joinConfiguration asks to join as a control plane, at the field', async () => {
      const r = await refusal(() => kubeadmDocuments(input({ role: 'worker-join', spec: { joinConfiguration: { controlPlane: {} } }, origin: { kind: 'KubeadmConfigTemplate', name: 'w', path: ['spec', 'template', 'spec'] } })));
      expect(r.code).to.equal('BOOTSTRAP_SPEC_INVALID');
      expect(r.message).to.include('KubeadmConfigTemplate/w spec.template.spec.joinConfiguration.controlPlane: a worker cannot join as a control plane');
    });
  });

  describe('cloud-config', () => {
    const spec: KubeadmConfigSpec = {
      files: [
        { path: '/etc/motd', content: 'hello\n', owner: 'root:root', permissions: '0644' },
        { path: '/etc/registry/token', contentFrom: { secret: { name: 'registry', key: 'token' } }, permissions: '0600' },
      ],
      preKubeadmCommands: ['echo pre'],
      postKubeadmCommands: ['echo post'],
      bootCommands: ['echo boot'],
      users: [{ name: 'capi', sudo: 'ALL=(ALL) NOPASSWD:ALL', sshAuthorizedKeys: ['ssh-ed25519 AAAA capi'], lockPassword: false, homeDir: '/home/capi' }],
      ntp: { enabled: true, servers: ['169.254.169.123'] },
      mounts: [['LABEL=etcd_disk', '/var/lib/etcddisk']],
      diskSetup: {
        partitions: [{ device: '/dev/nvme1n1', layout: true, tableType: 'gpt' }],
        filesystems: [{ label: 'etcd_disk', filesystem: 'ext4', device: '/dev/nvme1n1', extraOpts: ['-E', 'lazy_itable_init=1'] }],
      },
      verbosity: 5,
    };
    const resolveSecret = ({ name, key }: { name: string; key: string }): string | undefined => (name === 'registry' && key === 'token' ? 's3cr3t' : undefined);
    const certificates = {
      clusterCa: { certPem: 'CA CERT\n', keyPem: 'CA KEY\n' },
      etcdCa: { certPem: 'ETCD CERT\n', keyPem: 'ETCD KEY\n' },
      frontProxyCa: { certPem: 'FP CERT\n', keyPem: 'FP KEY\n' },
      serviceAccount: { publicKeyPem: 'SA PUB\n', privateKeyPem: 'SA KEY\n' },
    };

    it('init: certificates, spec files, the kubeadm config and the sentinel directory, in CABPK order and modes', async () => {
      const ud = await userData({ spec, resolveSecret, certificates });
      const files = docs(ud.write_files);
      expect(files.map((f) => [f.path, f.permissions])).to.deep.equal([
        ['/etc/kubernetes/pki/ca.crt', '0640'],
        ['/etc/kubernetes/pki/ca.key', '0600'],
        ['/etc/kubernetes/pki/etcd/ca.crt', '0640'],
        ['/etc/kubernetes/pki/etcd/ca.key', '0600'],
        ['/etc/kubernetes/pki/front-proxy-ca.crt', '0640'],
        ['/etc/kubernetes/pki/front-proxy-ca.key', '0600'],
        ['/etc/kubernetes/pki/sa.pub', '0640'],
        ['/etc/kubernetes/pki/sa.key', '0600'],
        ['/etc/motd', '0644'],
        ['/etc/registry/token', '0600'],
        ['/run/kubeadm/kubeadm.yaml', '0640'],
        ['/run/cluster-api/placeholder', '0640'],
      ]);
      expect(files[9]!.content).to.equal('s3cr3t');
      const kubeadm = parseAllDocuments(files[10]!.content as string).map((d) => (d.toJS() as Doc).kind);
      expect(kubeadm).to.deep.equal(['ClusterConfiguration', 'InitConfiguration']);
      expect(ud.runcmd).to.deep.equal(['echo pre', 'kubeadm init --config /run/kubeadm/kubeadm.yaml --v 5 && echo success > /run/cluster-api/bootstrap-success.complete', 'echo post']);
      expect(ud.bootcmd).to.deep.equal(['echo boot']);
    });

    it("takes pki.ts's ClusterPki as it is (checked by the compiler)", () => {
      const asCertificates = (pki: ClusterPki): ClusterCertificates => pki;
      expect(asCertificates).to.be.a('function');
    });

    it('init with a certificate key uploads the certificates', async () => {
      const ud = await userData({ certificateKey: 'f'.repeat(64) });
      expect(ud.runcmd).to.deep.equal(['kubeadm init --config /run/kubeadm/kubeadm.yaml --upload-certs && echo success > /run/cluster-api/bootstrap-success.complete']);
    });

    it('users, ntp, disk_setup, fs_setup and mounts in cloud-init\'s names', async () => {
      const ud = await userData({ spec, resolveSecret });
      expect(ud.users).to.deep.equal([{ name: 'capi', homedir: '/home/capi', lock_passwd: false, sudo: 'ALL=(ALL) NOPASSWD:ALL', ssh_authorized_keys: ['ssh-ed25519 AAAA capi'] }]);
      expect(ud.ntp).to.deep.equal({ enabled: true, servers: ['169.254.169.123'] });
      expect(ud.disk_setup).to.deep.equal({ '/dev/nvme1n1': { table_type: 'gpt', layout: true } });
      expect(ud.fs_setup).to.deep.equal([{ label: 'etcd_disk', filesystem: 'ext4', device: '/dev/nvme1n1', extra_opts: ['-E', 'lazy_itable_init=1'] }]);
      expect(ud.mounts).to.deep.equal([['LABEL=etcd_disk', '/var/lib/etcddisk']]);
    });

    it("a user's password comes from its Secret", async () => {
      const ud = await userData({ spec: { users: [{ name: 'ops', passwdFrom: { secret: { name: 'ops', key: 'hash' } } }] }, resolveSecret: () => '$6$hash' });
      expect(ud.users).to.deep.equal([{ name: 'ops', passwd: '$6$hash' }]);
    });

    it('joins write the JoinConfiguration to kubeadm-join-config.yaml; workers get no certificates', async () => {
      const cp = await userData({ role: 'control-plane-join', certificates });
      expect(docs(cp.write_files).map((f) => f.path)).to.include.members(['/etc/kubernetes/pki/ca.key', '/run/kubeadm/kubeadm-join-config.yaml']);
      expect(cp.runcmd).to.deep.equal(['kubeadm join --config /run/kubeadm/kubeadm-join-config.yaml && echo success > /run/cluster-api/bootstrap-success.complete']);
      const worker = await userData({ role: 'worker-join', certificates });
      expect(docs(worker.write_files).map((f) => f.path)).to.deep.equal(['/run/kubeadm/kubeadm-join-config.yaml', '/run/cluster-api/placeholder']);
    });

    it('external etcd: the etcd CA and the API server client pair go where etcd.external names them', async () => {
      const external = { endpoints: ['https://etcd:2379'], caFile: '/etc/etcd/ca.crt', certFile: '/etc/etcd/client.crt', keyFile: '/etc/etcd/client.key' };
      const ud = await userData({ spec: { clusterConfiguration: { etcd: { external } } }, certificates: { ...certificates, apiServerEtcdClient: { certPem: 'C', keyPem: 'K' } } });
      const paths = docs(ud.write_files).map((f) => f.path);
      expect(paths).to.include.members(['/etc/etcd/ca.crt', '/etc/etcd/client.crt', '/etc/etcd/client.key']);
      expect(paths).to.not.include('/etc/kubernetes/pki/etcd/ca.key');
    });

    it('a missing Secret is refused naming the secret and key, never any content', async () => {
      const r = await refusal(() => renderUserData({ ...input(), spec, origin: KCP, resolveSecret: () => undefined }));
      expect(r.code).to.equal('BOOTSTRAP_SECRET_NOT_FOUND');
      expect(r.message).to.equal('KubeadmControlPlane/dev-control-plane spec.kubeadmConfigSpec.files[1].contentFrom.secret: secret registry has no key token');
    });

    it('bad input is refused before any Secret is read', async () => {
      const asked: string[] = [];
      const r = await refusal(() => renderUserData({ ...input(), controlPlaneEndpoint: undefined, spec, resolveSecret: ({ name }) => (asked.push(name), 'x') }));
      expect(r.code).to.equal('BOOTSTRAP_NO_CONTROL_PLANE_ENDPOINT');
      expect(asked).to.deep.equal([]);
    });

    it('a resolved secret never shows in a refusal of the same spec', async () => {
      const bad: KubeadmConfigSpec = { ...spec, format: 'ignition' };
      const r = await refusal(() => renderUserData({ ...input(), spec: bad, resolveSecret }));
      expect(r.message).to.not.include('s3cr3t');
    });
  });

  describe('refusals, each at its field', () => {
    const cases: Array<[string, KubeadmConfigSpec, string, string]> = [
      [
        'a file with both content and contentFrom',
        { files: [{ path: '/a', content: 'x' }, { path: '/b', content: 'y', contentFrom: { secret: { name: 's', key: 'k' } } }] },
        'spec.kubeadmConfigSpec.files[1]',
        'has both content and contentFrom',
      ],
      ['format ignition', { format: 'ignition' }, 'spec.kubeadmConfigSpec.format', 'format ignition is not supported yet'],
      ['a user with both passwd and passwdFrom', { users: [{ name: 'u', passwd: 'x', passwdFrom: { secret: { name: 's', key: 'k' } } }] }, 'spec.kubeadmConfigSpec.users[0]', 'both passwd and passwdFrom'],
      ["a user's boolean inactive", { users: [{ name: 'u', inactive: true }] }, 'spec.kubeadmConfigSpec.users[0].inactive', 'inactive is not supported'],
      ['a generated discovery kubeconfig', { joinConfiguration: { discovery: { file: { kubeConfigPath: '/k', kubeConfig: {} } } } }, 'spec.kubeadmConfigSpec.joinConfiguration.discovery.file.kubeConfig', 'not supported yet'],
    ];
    for (const [what, spec, path, message] of cases) {
      it(`${what} is refused at ${path}`, async () => {
        const r = await refusal(() => renderUserData({ ...input(), role: 'worker-join', spec, origin: KCP }));
        expect(r.code).to.equal('BOOTSTRAP_SPEC_INVALID');
        expect(r.message).to.include(`KubeadmControlPlane/dev-control-plane ${path}: `).and.include(message);
        expect(r.details?.problems).to.have.length(1);
      });
    }

    it('lists every problem of a spec at once, with paths relative to the spec', () => {
      const problems = bootstrapSpecProblems({ format: 'ignition', files: [{ path: '/a', content: 'x', contentFrom: { secret: { name: 's', key: 'k' } } }] }, 'init');
      expect(problems.map((p) => [p.code, p.path])).to.deep.equal([
        ['unsupported-feature', ['format']],
        ['invalid-value', ['files', 0]],
      ]);
    });
  });
});
