/**
 * Hostile and broken cluster folders: every one is refused with a located problem (or
 * accepted when it is valid YAML that tools emit), never a crash, a hang or a knock-on
 * report that hides the cause. Classes from issue 10, each with cases of our own.
 */
import { expect } from 'chai';
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { formatProblem, validateClusterSpec, type SpecProblem } from '../../src/spec/index.js';
import { examplesDir } from '../fixtures/spec/support.js';

const EXAMPLES = readdirSync(examplesDir, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name).sort();

describe('hostile and broken cluster folders', function () {
  this.timeout(120_000);
  const made: string[] = [];
  after(() => made.forEach((d) => rmSync(d, { recursive: true, force: true })));

  /** A copy of an example under <tmp>/clusters/<name>, problems shown relative to <tmp>. */
  function copyOf(example: string): { dir: string; root: string } {
    const root = mkdtempSync(path.join(os.tmpdir(), 'capflow-hostile-'));
    made.push(root);
    const dir = path.join(root, 'clusters', example);
    cpSync(path.join(examplesDir, example), dir, { recursive: true });
    return { dir, root };
  }

  function edit(dir: string, file: string, from: string | RegExp, to: string): void {
    const p = path.join(dir, file);
    const text = readFileSync(p, 'utf8');
    const next = text.replace(from, to);
    expect(next, `edit of ${file}: ${String(from)}`).to.not.equal(text);
    writeFileSync(p, next);
  }

  async function problemsOf(dir: string, root: string): Promise<{ errors: SpecProblem[]; valid: boolean; text: string }> {
    const { model, problems } = await validateClusterSpec(dir, { displayRoot: root });
    const errors = problems.filter((p) => p.severity === 'error');
    return { errors, valid: model !== undefined && errors.length === 0, text: problems.map(formatProblem).join('\n') };
  }

  type Case = { name: string; example?: string; change: (dir: string) => void; expect: RegExp; count?: number };
  function table(cases: Case[]): void {
    for (const c of cases) {
      it(c.name, async () => {
        const { dir, root } = copyOf(c.example ?? 'aws-self-managed');
        c.change(dir);
        const r = await problemsOf(dir, root);
        expect(r.valid, r.text).to.equal(false);
        expect(r.text).to.match(c.expect);
        if (c.count !== undefined) expect(r.errors, r.text).to.have.length(c.count);
        for (const e of r.errors) expect(e.line, `located: ${formatProblem(e)}`).to.be.a('number');
      });
    }
  }

  describe('a misspelt field on a reference path is reported once, as the typo, not as a crash', () => {
    table([
      { name: 'infrastructureRef.nme on the Cluster, should point at the typo', change: (d) => edit(d, 'cluster.yaml', /( {4})name: aws-dev\n/, '$1nme: aws-dev\n'), expect: /cluster\.yaml:\d+:5 Cluster\/aws-dev spec\.infrastructureRef\.nme: unknown field `nme`/ },
      { name: 'spce instead of spec on a MachineDeployment, should report the unknown field and nothing about its references', change: (d) => edit(d, 'workers.yaml', /^spec:/m, 'spce:'), expect: /workers\.yaml:\d+:1 MachineDeployment\/aws-dev-md-0 spce: unknown field `spce`/, count: 1 },
      { name: 'templte instead of template on a MachineDeployment, should say template is missing and suggest it', change: (d) => edit(d, 'workers.yaml', /^ {2}template:/m, '  templte:'), expect: /spec\.templte: unknown field `templte` .*did you mean `template`\?/, count: 2 },
      { name: 'infrastructurRef inside a MachinePool template, should be reported without a crash', example: 'aws-machinepool', change: (d) => edit(d, 'workers.yaml', /infrastructureRef:/, 'infrastructurRef:'), expect: /unknown field `infrastructurRef`/ },
      { name: 'controlPlaneRef spelt contrlPlaneRef, should ask for the missing control plane and flag the typo', change: (d) => edit(d, 'cluster.yaml', 'controlPlaneRef:', 'contrlPlaneRef:'), expect: /unknown field `contrlPlaneRef`/ },
    ]);
  });

  describe('YAML aliases, tags and encodings are located, never a parser crash', () => {
    table([
      { name: 'an alias with no anchor, should name the alias at its line', change: (d) => edit(d, 'cluster.yaml', 'team: platform', 'team: *nope'), expect: /cluster\.yaml:\d+:11 YAML: alias \*nope names no anchor/ },
      { name: 'a merge key whose anchor is in another document, should say anchors do not cross ---', change: (d) => edit(d, 'addons.yaml', /^ {2}name: calico-manifests$/m, '  <<: *spec\n  name: calico-manifests'), expect: /addons\.yaml:\d+:\d+ YAML: alias \*spec names no anchor .*do not reach across ---/ },
      { name: 'a merge key whose source is a string, should be refused', change: (d) => edit(d, 'cluster.yaml', 'team: platform', 'team: &t platform\n    x:\n      <<: *t'), expect: /a merge key \(<<\) needs a map/ },
      {
        name: 'an alias bomb (nine aliases nested four deep), should be refused as resource exhaustion',
        change: (d) =>
          writeFileSync(
            path.join(d, 'bomb.yaml'),
            'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bomb\ndata:\n  a: &a ["x","x","x","x","x","x","x","x","x"]\n  b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n  c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n  d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n  e: [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n',
          ),
        expect: /bomb\.yaml:\d+:\d+ YAML: aliases expand to too many nodes/,
      },
      { name: 'CloudFormation !Ref, should be refused as an unknown tag', change: (d) => edit(d, 'cluster.yaml', 'team: platform', 'team: !Ref Team'), expect: /cluster\.yaml:\d+:\d+ YAML: YAML tag !Ref is not supported/ },
      { name: '!!binary, should be refused as a tag Kubernetes objects do not hold', change: (d) => edit(d, 'cluster.yaml', 'team: platform', 'team: !!binary cGxhdGZvcm0='), expect: /YAML tag !!binary is not supported/ },
      { name: 'a UTF-16 file, should say so at line 1 and not report its objects as missing', change: (d) => writeFileSync(path.join(d, 'cluster.yaml'), Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(readFileSync(path.join(d, 'cluster.yaml'), 'utf8'), 'utf16le')])), expect: /^clusters\/aws-self-managed\/cluster\.yaml:1:1 the file is UTF-16/, count: 1 },
      { name: 'bytes that are not UTF-8, should name the line of the first one', change: (d) => writeFileSync(path.join(d, 'cluster.yaml'), Buffer.concat([Buffer.from(readFileSync(path.join(d, 'cluster.yaml'), 'utf8').replace('team: platform', 'team: plat')), Buffer.from([0xc3, 0x28])])), expect: /not valid UTF-8 \(first bad byte on line \d+\)/, count: 1 },
      { name: 'a tab used as indentation, should say so first and not report the AWSCluster as not defined', change: (d) => edit(d, 'cluster.yaml', /^ {2}region: us-east-1$/m, '\tregion: us-east-1'), expect: /^clusters\/aws-self-managed\/cluster\.yaml:\d+:1 YAML: Tabs are not allowed as indentation/ },
      { name: 'a list nested 5,000 deep, should be refused without a JavaScript stack overflow message', change: (d) => writeFileSync(path.join(d, 'deep.yaml'), `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: deep\ndata:\n  x: ${'['.repeat(5000)}${']'.repeat(5000)}\n`), expect: /deep\.yaml:\d+:\d+ YAML: nesting deeper than 100 levels/ },
      { name: 'a map nested 150 deep in block style, should be refused at the level that is too deep', change: (d) => writeFileSync(path.join(d, 'deep.yaml'), `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: deep\ndata:\n${Array.from({ length: 150 }, (_, i) => `${'  '.repeat(i + 1)}k:`).join('\n')} 1\n`), expect: /deep\.yaml:\d+:\d+ YAML: nesting deeper than 100 levels/, count: 1 },
    ]);
    it('a tab-indented file gives no "not defined in this folder" knock-on problems', async () => {
      const { dir, root } = copyOf('aws-self-managed');
      edit(dir, 'cluster.yaml', /^ {2}region: us-east-1$/m, '\tregion: us-east-1');
      const r = await problemsOf(dir, root);
      expect(r.text).to.not.match(/not defined in this folder|no Cluster found/);
    });
  });

  describe('valid YAML that tools emit is accepted', () => {
    for (const [name, suffix] of [
      ['a trailing --- (as helm and kustomize write)', '---\n'],
      ['a comment-only document between separators', '---\n# kept for later:\n# kind: ConfigMap\n---\n'],
      ['an explicit empty document (---, then ...)', '---\n...\n'],
    ] as const) {
      it(`${name}, should validate as before with the same spec hash`, async () => {
        const before = copyOf('aws-self-managed');
        const after = copyOf('aws-self-managed');
        writeFileSync(path.join(after.dir, 'cluster.yaml'), readFileSync(path.join(after.dir, 'cluster.yaml'), 'utf8') + suffix);
        const a = await validateClusterSpec(before.dir, { displayRoot: before.root });
        const b = await validateClusterSpec(after.dir, { displayRoot: after.root });
        expect(b.problems.map(formatProblem)).to.deep.equal(a.problems.map(formatProblem));
        expect(b.model?.documents.length).to.equal(a.model?.documents.length);
      });
    }
  });

  describe('values AWS or kubeadm would refuse only after capflow started, refused before', () => {
    table([
      { name: 'a /28 VPC, too small for a subnet pair per zone', change: (d) => edit(d, 'cluster.yaml', '10.0.0.0/16', '10.0.0.0/28'), expect: /spec\.network\.vpc\.cidrBlock: 10\.0\.0\.0\/28 is too small .* they would be \/32/ },
      { name: 'a /15 VPC, larger than AWS allows', change: (d) => edit(d, 'cluster.yaml', '10.0.0.0/16', '10.0.0.0/15'), expect: /a VPC block must be between \/16 and \/28, not \/15/ },
      { name: 'a bastion allow-list entry 999.0.0.0/8', change: (d) => edit(d, 'cluster.yaml', '  additionalTags:', '  bastion:\n    enabled: true\n    allowedCIDRBlocks:\n    - 999.0.0.0/8\n  additionalTags:'), expect: /spec\.bastion\.allowedCIDRBlocks\[0\]: "999\.0\.0\.0\/8" is not a CIDR block/ },
      { name: 'a pod CIDR without a prefix', change: (d) => edit(d, 'cluster.yaml', '192.168.0.0/16', '192.168.0.0'), expect: /Cluster\/aws-dev spec\.clusterNetwork\.pods\.cidrBlocks\[0\]: "192\.168\.0\.0" is not a CIDR block/ },
      { name: 'region us-east-1x', change: (d) => edit(d, 'cluster.yaml', 'region: us-east-1', 'region: us-east-1x'), expect: /spec\.region: "us-east-1x" is not an AWS region name/ },
      { name: 'a region that is a sentence', change: (d) => edit(d, 'cluster.yaml', 'region: us-east-1', 'region: the one in Virginia'), expect: /spec\.region: "the one in Virginia" is not an AWS region name/ },
      { name: 'an EKS region that is not a region', example: 'eks-managed', change: (d) => edit(d, 'control-plane.yaml', /region: [a-z0-9-]+/, 'region: us_west_2'), expect: /spec\.region: "us_west_2" is not an AWS region name/ },
      { name: 'negative MachineDeployment replicas', change: (d) => edit(d, 'workers.yaml', 'replicas: 3', 'replicas: -1'), expect: /MachineDeployment\/aws-dev-md-0 spec\.replicas: replicas cannot be negative \(-1\)/ },
      { name: 'zero control plane replicas', change: (d) => edit(d, 'control-plane.yaml', 'replicas: 3', 'replicas: 0'), expect: /spec\.replicas: a control plane needs at least 1 replica/ },
      { name: 'replicas beyond int32', change: (d) => edit(d, 'workers.yaml', 'replicas: 3', 'replicas: 4294967296'), expect: /spec\.replicas: must be <= 2147483647/ },
      { name: 'an AWSMachinePool whose maxSize is below its minSize', example: 'aws-machinepool', change: (d) => edit(d, 'workers.yaml', /maxSize: \d+/, 'maxSize: 1'), expect: /maxSize \(1\) is smaller than minSize \(2\)/ },
      { name: 'an instance type with a dash for a dot', change: (d) => edit(d, 'control-plane.yaml', /instanceType: \S+/, 'instanceType: m5-large'), expect: /instanceType: "m5-large" is not an EC2 instance type/ },
      { name: 'Kubernetes v9.99.99', change: (d) => edit(d, 'control-plane.yaml', 'version: v1.31.4', 'version: v9.99.99'), expect: /spec\.version: Kubernetes v9\.99\.99 does not exist: every release is 1\.x/ },
      { name: 'Kubernetes v1.99.0', change: (d) => edit(d, 'control-plane.yaml', 'version: v1.31.4', 'version: v1.99.0'), expect: /Kubernetes v1\.99\.0 does not exist/ },
      { name: 'a Kubernetes version that is not semver', change: (d) => edit(d, 'control-plane.yaml', 'version: v1.31.4', 'version: latest'), expect: /"latest" is not a Kubernetes version/ },
      { name: 'maxSurge and maxUnavailable both 0, a rollout that could never progress', change: (d) => edit(d, 'workers.yaml', 'maxSurge: 1\n      maxUnavailable: 0', 'maxSurge: 0\n      maxUnavailable: 0'), expect: /MachineDeployment\/aws-dev-md-0 spec\.strategy\.rollingUpdate\.maxSurge: maxSurge and maxUnavailable are both 0/ },
      { name: 'maxSurge that is neither a number nor a percentage', change: (d) => edit(d, 'workers.yaml', 'maxSurge: 1\n', 'maxSurge: one\n'), expect: /spec\.strategy\.rollingUpdate\.maxSurge: maxSurge must be a non-negative integer or a percentage, not "one"/ },
      { name: 'a failure domain in another region', change: (d) => edit(d, 'workers.yaml', '      version: v1.31.4\n      bootstrap:', '      version: v1.31.4\n      failureDomain: eu-west-1a\n      bootstrap:'), expect: /spec\.template\.spec\.failureDomain: failure domain eu-west-1a is not a zone of region us-east-1/ },
      { name: 'workers newer than the control plane', change: (d) => edit(d, 'workers.yaml', 'version: v1.31.4', 'version: v1.32.0'), expect: /workers on v1\.32\.0 would be newer than the control plane \(v1\.31\.4\)/ },
      {
        name: 'subnets that overlap, lie outside the VPC and name another region\'s zone, each at its field',
        change: (d) =>
          edit(
            d,
            'cluster.yaml',
            '      availabilityZoneSelection: Ordered\n',
            '      availabilityZoneSelection: Ordered\n    subnets:\n    - id: a\n      cidrBlock: 10.0.0.0/24\n      availabilityZone: us-east-1a\n      isPublic: true\n    - id: b\n      cidrBlock: 10.0.0.128/25\n      availabilityZone: us-east-1a\n    - id: c\n      cidrBlock: 10.1.0.0/24\n      availabilityZone: us-east-1b\n    - id: d\n      cidrBlock: 10.0.9.0/24\n      availabilityZone: eu-west-1b\n',
          ),
        expect: /subnets\[1\]\.cidrBlock: 10\.0\.0\.128\/25 overlaps[^]*subnets\[2\]\.cidrBlock: 10\.1\.0\.0\/24 is outside the VPC block[^]*subnets\[3\]\.availabilityZone: availability zone eu-west-1b is not in region us-east-1/,
        count: 3,
      },
    ]);
  });

  describe('what is printed cannot be forged by a file name or drive the terminal', () => {
    it('a newline in a file name is printed escaped, on the one problem line', async () => {
      const { dir, root } = copyOf('aws-self-managed');
      writeFileSync(path.join(dir, 'a\nclusters-x.yaml:1:1 Cluster-x spec: forged.yaml'), 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: [oops\n');
      const r = await problemsOf(dir, root);
      const lines = r.text.split('\n');
      expect(lines).to.have.length(r.errors.length);
      expect(lines[0]).to.match(/^clusters\/aws-self-managed\/a\\nclusters-x\.yaml:1:1 Cluster-x spec: forged\.yaml:\d+:\d+ YAML:/);
    });
    it('ANSI escapes in a kind reach the output escaped', async () => {
      const { dir, root } = copyOf('aws-self-managed');
      writeFileSync(path.join(dir, 'evil.yaml'), 'apiVersion: v1\nkind: "Conf\\e[31mRED\\e[0m"\nmetadata:\n  name: x\n');
      const r = await problemsOf(dir, root);
      expect(r.text).to.include('Conf\\u001b[31mRED\\u001b[0m');
      expect(r.text).to.not.include('\u001b');
    });
  });

  describe('what the machines would refuse, found by validation', () => {
    table([
      { name: 'two stacked etcd control planes, should ask for an odd number', change: (d) => edit(d, 'control-plane.yaml', 'replicas: 3', 'replicas: 2'), expect: /control-plane\.yaml:\d+:\d+ KubeadmControlPlane\/aws-dev-control-plane spec\.replicas: 2 control plane replicas with stacked etcd: etcd needs an odd number of members/, count: 1 },
      { name: 'an EBS volume type that does not exist, and a volume larger than EBS makes', change: (d) => edit(d, 'control-plane.yaml', /size: 50\n(\s+)type: gp3/, 'size: 99999999\n$1type: gp9'), expect: /rootVolume\.size: 99999999 GiB is larger than any EBS volume[\s\S]*rootVolume\.type: "gp9" is not an EBS volume type/, count: 2 },
      { name: 'a file with both content and contentFrom in a KubeadmConfigTemplate', change: (d) => edit(d, 'workers.yaml', /(^kind: KubeadmConfigTemplate\n(?:.*\n)*? {4}spec:\n)/m, '$1      files:\n      - path: /etc/x\n        content: x\n        contentFrom:\n          secret: {name: s, key: k}\n'), expect: /workers\.yaml:\d+:\d+ KubeadmConfigTemplate\/aws-dev-workers spec\.template\.spec\.files\[0\]: file \/etc\/x has both content and contentFrom; keep one/, count: 1 },
      { name: 'no API load balancer (so no control plane endpoint), refused before anything is made', change: (d) => edit(d, 'cluster.yaml', 'loadBalancerType: nlb', 'loadBalancerType: disabled'), expect: /cluster\.yaml:\d+:\d+ AWSCluster\/aws-dev spec\.controlPlaneLoadBalancer\.loadBalancerType: .*`disabled` is not supported yet/, count: 1 },
      { name: 'instance data capflow does not fill in ({{ ds.meta_data.hostname }})', change: (d) => edit(d, 'control-plane.yaml', "name: '{{ ds.meta_data.local_hostname }}'", "name: '{{ ds.meta_data.hostname }}'"), expect: /initConfiguration\.nodeRegistration\.name: \{\{ ds\.meta_data\.hostname \}\} is not instance data capflow's bootstrap fills in/, count: 1 },
      { name: 'a million [ on one line is refused before parsing, at its line', change: (d) => writeFileSync(path.join(d, 'deep.yaml'), `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: deep\ndata:\n  x: ${'['.repeat(1_000_000)}\n`), expect: /deep\.yaml:6:\d+ YAML: nesting deeper than 100 levels .*found before parsing/, count: 1 },
      { name: 'compact sequences nested 200 deep on one line are refused before parsing', change: (d) => writeFileSync(path.join(d, 'deep.yaml'), `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: deep\nbinaryData:\n${'- '.repeat(200)}x\n`), expect: /deep\.yaml:6:\d+ YAML: nesting deeper than 100 levels/, count: 1 },
    ]);
  });

  it('documents ended with ... count against the document limit, and 200,000 of them never overflow the stack', async () => {
    const { dir, root } = copyOf('aws-self-managed');
    writeFileSync(path.join(dir, 'many.yaml'), 'a: 1\n...\n'.repeat(200_000));
    const r = await problemsOf(dir, root);
    expect(r.valid).to.equal(false);
    expect(r.text).to.match(/the folder holds \d+ YAML documents, over the limit of 5000 per cluster folder \(most: clusters\/aws-self-managed\/many\.yaml 200001/);
    expect(r.text).to.not.match(/stack|INTERNAL/i);
  });

  describe('more hostile cases (second audit)', () => {
    const dropSpec = (d: string, file: string, kind: string): void => {
      const text = readFileSync(path.join(d, file), 'utf8');
      const docs = text.split(/^---\n/m);
      const i = docs.findIndex((doc) => new RegExp(`^kind: ${kind}$`, 'm').test(doc));
      expect(i, `${kind} in ${file}`).to.be.at.least(0);
      docs[i] = (docs[i] as string).replace(/^spec:\n(?:[ #].*\n|\n)*/m, '');
      writeFileSync(path.join(d, file), docs.join('---\n'));
    };
    table([
      { name: 'a KubeadmControlPlane without spec, should say spec is missing and what it needs', change: (d) => dropSpec(d, 'control-plane.yaml', 'KubeadmControlPlane'), expect: /control-plane\.yaml:\d+:1 KubeadmControlPlane\/aws-dev-control-plane spec: missing required field `spec` \(a KubeadmControlPlane needs `spec\.kubeadmConfigSpec`, `spec\.machineTemplate`, `spec\.version`\)/, count: 1 },
      { name: 'an AWSMachineTemplate without spec, should be refused, not launched without an instance type', change: (d) => dropSpec(d, 'control-plane.yaml', 'AWSMachineTemplate'), expect: /AWSMachineTemplate\/aws-dev-control-plane spec: missing required field `spec` \(an AWSMachineTemplate needs `spec\.template`\)/, count: 1 },
      { name: 'a Cluster without spec, should name the missing spec (not "0 errors")', change: (d) => dropSpec(d, 'cluster.yaml', 'Cluster'), expect: /cluster\.yaml:\d+:1 Cluster\/aws-dev spec: missing required field `spec`/, count: 1 },
      { name: 'a MachineDeployment whose template spec is empty, should say so at its line', change: (d) => edit(d, 'workers.yaml', /^ {4}spec:\n(?: {6}.*\n)+/m, '    spec:\n'), expect: /workers\.yaml:\d+:\d+ MachineDeployment\/aws-dev-md-0 spec\.template\.spec: missing required field `spec`/, count: 1 },
      { name: 'a reference whose kind is a number, should be reported once, by the schema', change: (d) => edit(d, 'cluster.yaml', '    kind: AWSCluster\n', '    kind: 5\n'), expect: /spec\.infrastructureRef\.kind: must be string/, count: 1 },
      { name: 'metadata written as a list, should be reported once, without "no Cluster found"', change: (d) => edit(d, 'cluster.yaml', /^metadata:\n {2}name: aws-dev\n {2}labels:\n {4}cni: calico\n/m, 'metadata: [aws-dev]\n'), expect: /cluster\.yaml:\d+:\d+ Cluster metadata: must be object/, count: 1 },
      { name: 'an alias inside its own anchor (a list), should be refused, not overflow the stack', change: (d) => edit(d, 'cluster.yaml', 'team: platform', 'team: &r [x, *r]'), expect: /cluster\.yaml:\d+:\d+ YAML: alias \*r is inside the node its anchor &r names/, count: 1 },
      { name: 'a ConfigMap whose data holds an alias to itself, should be refused, not overflow the stack', change: (d) => edit(d, 'addons.yaml', /^data:\n/m, 'data: &d\n  x: *d\n'), expect: /addons\.yaml:\d+:\d+ YAML: alias \*d is inside the node its anchor &d names/, count: 1 },
      {
        name: 'an alias bomb of maps, should be refused at the alias that passes the limit',
        change: (d) =>
          writeFileSync(
            path.join(d, 'bomb.yaml'),
            `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bomb\ndata:\n  l0: &l0 {a: x, b: x}\n${Array.from({ length: 20 }, (_, i) => `  l${i + 1}: &l${i + 1} {a: *l${i}, b: *l${i}, c: *l${i}}`).join('\n')}\n`,
          ),
        expect: /bomb\.yaml:(?:[7-9]|\d\d):\d+ YAML: aliases expand to too many nodes/,
        count: 1,
      },
      { name: 'a merge key listing aliases from another document, should report the aliases only', change: (d) => edit(d, 'cluster.yaml', 'kind: AWSCluster\nmetadata:\n  name: aws-dev\n', 'kind: AWSCluster\nmetadata:\n  <<: [*a, *b]\n  name: aws-dev\n'), expect: /alias \*a names no anchor/, count: 2 },
      { name: 'instance type t3.gigantic, should be refused (no such size)', change: (d) => edit(d, 'control-plane.yaml', 'instanceType: t3.large', 'instanceType: t3.gigantic'), expect: /instanceType: "t3\.gigantic" is not an EC2 instance type/ },
      {
        name: 'a security group rule port 70000 and an IPv4 block in ipv6CidrBlocks, should be refused at their fields',
        change: (d) =>
          edit(d, 'cluster.yaml', '  network:\n', '  network:\n    additionalControlPlaneIngressRules:\n    - description: x\n      protocol: tcp\n      fromPort: 70000\n      toPort: 22\n      ipv6CidrBlocks:\n      - 10.0.0.0/8\n'),
        expect: /fromPort: fromPort 70000 is not a port[^]*ipv6CidrBlocks\[0\]: "10\.0\.0\.0\/8" is not an IPv6 block/,
        count: 2,
      },
      { name: 'Kubernetes v01.31.4 (a leading zero kubeadm refuses)', change: (d) => edit(d, 'control-plane.yaml', 'version: v1.31.4', 'version: v01.31.4'), expect: /"v01\.31\.4" is not a Kubernetes version/ },
      { name: 'Kubernetes v1.31.1000 (no such patch)', change: (d) => edit(d, 'control-plane.yaml', 'version: v1.31.4', 'version: v1.31.1000'), expect: /Kubernetes v1\.31\.1000 does not exist/ },
      {
        name: 'a subnet block /33, should be reported once',
        change: (d) => edit(d, 'cluster.yaml', '      availabilityZoneSelection: Ordered\n', '      availabilityZoneSelection: Ordered\n    subnets:\n    - id: a\n      cidrBlock: 10.0.0.0/33\n      availabilityZone: us-east-1a\n      isPublic: true\n'),
        expect: /subnets\[0\]\.cidrBlock: "10\.0\.0\.0\/33" has a prefix longer than an IPv4 address/,
        count: 1,
      },
      { name: 'an application load balancer for the API server, refused before provision-vpc makes the VPC', change: (d) => edit(d, 'cluster.yaml', 'loadBalancerType: nlb', 'loadBalancerType: alb'), expect: /spec\.controlPlaneLoadBalancer\.loadBalancerType: an application load balancer cannot carry the API server/, count: 1 },
      { name: 'an NLB with an SSL health check, refused before provision-vpc makes the VPC', change: (d) => edit(d, 'cluster.yaml', 'healthCheckProtocol: HTTPS', 'healthCheckProtocol: SSL'), expect: /healthCheckProtocol: SSL is not a health check protocol of an nlb load balancer/, count: 1 },
      { name: 'a user VPC id that is not one', change: (d) => edit(d, 'cluster.yaml', '      cidrBlock: 10.0.0.0/16\n', '      id: my-vpc\n'), expect: /spec\.network\.vpc\.id: "my-vpc" is not a VPC id/ },
      { name: '!!float on an integer, which the parser would keep as a string', change: (d) => edit(d, 'cluster.yaml', 'team: platform', 'team: !!float 1'), expect: /cluster\.yaml:\d+:\d+ YAML: the value does not read as its YAML tag !!float says/, count: 1 },
      { name: 'a NUL byte in a value, should be refused at its line (go-yaml refuses control characters)', change: (d) => edit(d, 'cluster.yaml', 'team: platform', 'team: plat\u0000form'), expect: /cluster\.yaml:43:15 the file holds the control character U\+0000/, count: 1 },
      { name: 'replicas .inf, should print Infinity, not null', change: (d) => edit(d, 'workers.yaml', 'replicas: 3', 'replicas: .inf'), expect: /spec\.replicas: must be <= 2147483647 \(got Infinity\)/ },
    ]);
    it('a Latin-1 byte, should be located at its line and column', async () => {
      const { dir, root } = copyOf('aws-self-managed');
      const text = readFileSync(path.join(dir, 'cluster.yaml'), 'utf8').replace('team: platform', 'team: pl\u00e4tform');
      writeFileSync(path.join(dir, 'cluster.yaml'), Buffer.from(text, 'latin1'));
      const r = await problemsOf(dir, root);
      expect(r.text).to.match(/^clusters\/aws-self-managed\/cluster\.yaml:43:13 the file is not valid UTF-8 \(first bad byte on line 43\)/);
    });
    it('40,000 merge keys, should be refused in seconds (alias lookups were quadratic)', async () => {
      const { dir, root } = copyOf('aws-self-managed');
      writeFileSync(path.join(dir, 'merges.yaml'), `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: m\nx:\n  base: &a {k: v}\n${Array.from({ length: 40_000 }, (_, i) => `  m${i}: {<<: *a}`).join('\n')}\n`);
      const started = Date.now();
      const r = await problemsOf(dir, root);
      expect(Date.now() - started).to.be.below(20_000);
      expect(r.text).to.match(/merges\.yaml:\d+:\d+ YAML: aliases expand to too many nodes/);
    });
    for (const [name, change] of [
      ['an AWSCluster without spec (nothing in it is required: us-east-1, a computed layout)', (d: string) => dropSpec(d, 'cluster.yaml', 'AWSCluster')],
      ['a file with classic Mac line ends (CR only), as go-yaml reads them', (d: string) => writeFileSync(path.join(d, 'cluster.yaml'), readFileSync(path.join(d, 'cluster.yaml'), 'utf8').replace(/\n/g, '\r'))],
    ] as const) {
      it(`${name}, should be valid`, async () => {
        const { dir, root } = copyOf('aws-self-managed');
        change(dir);
        const r = await problemsOf(dir, root);
        expect(r.valid, r.text).to.equal(true);
      });
    }
  });

  describe('every key of every example misspelt, then removed, in turn: a located problem or a valid folder, never a crash', () => {
    for (const example of EXAMPLES) {
      it(`${example}: each key renamed and each key line removed, should never throw and every error should name its file and line`, async () => {
        const { dir, root } = copyOf(example);
        const files = readdirSync(dir).filter((f) => f.endsWith('.yaml'));
        let mutations = 0;
        let refused = 0;
        for (const file of files) {
          const original = readFileSync(path.join(dir, file), 'utf8');
          const lines = original.split('\n');
          for (let i = 0; i < lines.length; i++) {
            const m = /^(\s*(?:- )?)([A-Za-z][A-Za-z0-9]*):(\s|$)/.exec(lines[i] as string);
            if (!m) continue;
            const renamed = [...lines];
            renamed[i] = `${m[1]}${m[2]}x:${(lines[i] as string).slice(m[0].length - m[3]!.length)}`;
            const removed = lines.filter((_, j) => j !== i);
            for (const [how, copy] of [['renamed', renamed], ['removed', removed]] as const) {
              writeFileSync(path.join(dir, file), copy.join('\n'));
              const r = await problemsOf(dir, root);
              const where = `${file}:${i + 1} ${how}`;
              mutations++;
              if (!r.valid) refused++;
              // no model means at least one error says why (never "invalid" with nothing to fix)
              if (!r.valid) expect(r.errors.length, `${where}: refused without a problem`).to.be.greaterThan(0);
              for (const e of r.errors) expect(e.file, `${where} ${formatProblem(e)}`).to.be.a('string');
              for (const e of r.errors.filter((x) => x.code !== 'cluster-count')) expect(e.line, `${where} ${formatProblem(e)}`).to.be.a('number');
            }
          }
          writeFileSync(path.join(dir, file), original);
        }
        expect(mutations).to.be.greaterThan(20);
        expect(refused, 'most renamed or removed keys are refused').to.be.greaterThan(mutations / 3);
      });
    }
  });
});
