import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { expect } from 'chai';
import { formatProblem, specHash, validateClusterSpec } from '../../src/spec/index.js';
import type { AWSCluster, AWSMachineTemplate, ClusterModel, KubeadmControlPlane, SpecProblem } from '../../src/spec/index.js';
import { expandedYaml } from '../../src/cli/render.js';
import { applyJsonPatch, parseGoTemplate, renderGoTemplate, templateValue } from '../../src/spec/topology-patches.js';
import { cleanupSpecFolders, displayRootOf, fixturesDir, specFolder } from '../fixtures/spec/support.js';
import { CLASS, CLUSTER } from '../fixtures/spec/topology.js';
import { spawnCapflow } from '../support/cli.js';

const V211 = path.join(fixturesDir, 'upstream-v2.11');

/** 1-based line of the first line holding `needle` (after the `after`-th match of `after`, when given). */
function lineOf(text: string, needle: string, after?: string): number {
  const start = after === undefined ? 0 : text.indexOf(after);
  const at = text.indexOf(needle, start);
  if (start < 0 || at < 0) throw new Error(`${needle} not in the text`);
  return text.slice(0, at).split('\n').length;
}

async function load(files: Record<string, string>, classes?: Record<string, string>): Promise<{ model?: ClusterModel; problems: SpecProblem[]; inputs?: string[]; lines: string[] }> {
  const dir = await specFolder(files);
  const root = displayRootOf(dir);
  if (classes) {
    await mkdir(path.join(root, 'classes'), { recursive: true });
    for (const [name, text] of Object.entries(classes)) await writeFile(path.join(root, 'classes', name), text);
  }
  const r = await validateClusterSpec(dir, { displayRoot: root });
  return { ...r, lines: r.problems.map(formatProblem) };
}

const doc = <T>(model: ClusterModel | undefined, kind: string, name: string): T => {
  const d = model?.documents.find((x) => x.kind === kind && x.name === name);
  if (!d) throw new Error(`no ${kind}/${name} in ${model?.documents.map((x) => `${x.kind}/${x.name}`).join(', ')}`);
  return d.object as T;
};

describe('ClusterClass topologies (spec.topology expanded, as Cluster API\'s topology controller does)', function () {
  this.timeout(60_000);
  after(cleanupSpecFolders);

  it('expands into the documents capflow acts on, with stable names, variables, defaults, builtins, overrides and enabledIf', async () => {
    const { model, lines, inputs } = await load({ 'cluster.yaml': CLUSTER, 'class.yaml': CLASS });
    expect(lines).to.deep.equal([]);
    expect(inputs).to.equal(undefined);
    expect(model?.provider).to.equal('aws');
    expect(model?.documents.map((d) => `${d.kind}/${d.name}`).sort()).to.deep.equal(
      [
        'Cluster/dev',
        'AWSCluster/dev',
        'KubeadmControlPlane/dev-control-plane',
        'AWSMachineTemplate/dev-control-plane',
        'MachineDeployment/dev-md-0',
        'KubeadmConfigTemplate/dev-md-0',
        'AWSMachineTemplate/dev-md-0',
        'MachineDeployment/dev-md-1',
        'KubeadmConfigTemplate/dev-md-1',
        'AWSMachineTemplate/dev-md-1',
      ].sort(),
    );
    const cluster = doc<{ spec: Record<string, unknown> }>(model, 'Cluster', 'dev');
    expect(cluster.spec.topology).to.equal(undefined);
    expect(cluster.spec.controlPlaneRef).to.deep.include({ kind: 'KubeadmControlPlane', name: 'dev-control-plane' });
    const aws = doc<AWSCluster>(model, 'AWSCluster', 'dev');
    expect(aws.spec.region, 'the variable default').to.equal('us-east-1');
    expect(aws.spec.bastion, 'patch enabled by enabledIf').to.deep.include({ enabled: true });
    const kcp = doc<KubeadmControlPlane>(model, 'KubeadmControlPlane', 'dev-control-plane');
    expect([kcp.spec.version, kcp.spec.replicas, kcp.spec.machineTemplate.infrastructureRef.name]).to.deep.equal(['v1.33.4', 3, 'dev-control-plane']);
    const md0 = doc<AWSMachineTemplate>(model, 'AWSMachineTemplate', 'dev-md-0').spec.template.spec;
    const md1 = doc<AWSMachineTemplate>(model, 'AWSMachineTemplate', 'dev-md-1').spec.template.spec;
    expect(md0.instanceType).to.equal('t3.large');
    expect(md1.instanceType, 'the per-MachineDeployment override').to.equal('m5.2xlarge');
    expect(md0.rootVolume, 'a Go template value with a nested default').to.deep.include({ size: 50, type: 'gp3' });
    expect(md1.additionalTags, 'builtins').to.deep.equal({ md: 'md-1', cluster: 'dev', version: 'v1.33.4' });
    expect(model?.machineDeployments.map((m) => [m.deployment.metadata.name, m.deployment.spec.replicas, m.machineTemplate.metadata.name])).to.deep.equal([
      ['dev-md-0', 2, 'dev-md-0'],
      ['dev-md-1', 1, 'dev-md-1'],
    ]);
    expect(doc<AWSMachineTemplate>(model, 'AWSMachineTemplate', 'dev-control-plane').spec.template.spec.instanceType, 'not selected by the workers patch').to.equal('t3.large');
  });

  it('enabledIf that renders anything but "true" leaves its patch out', async () => {
    const { model, lines } = await load({ 'cluster.yaml': CLUSTER.replace('value: true', 'value: false'), 'class.yaml': CLASS });
    expect(lines).to.deep.equal([]);
    expect(doc<AWSCluster>(model, 'AWSCluster', 'dev').spec.bastion).to.equal(undefined);
  });

  it('finds the class under classes/ at the repository root and reports that folder as an input, with and without errors', async () => {
    const ok = await load({ 'cluster.yaml': CLUSTER }, { 'tiny.yaml': CLASS });
    expect(ok.lines).to.deep.equal([]);
    expect(ok.inputs).to.deep.equal(['classes']);
    expect(ok.model?.documents.find((d) => d.kind === 'AWSCluster')?.source.origin).to.match(/^expanded for Cluster dev \(topology at clusters\/test\/cluster.yaml:1\) from ClusterClass tiny \(classes\/tiny.yaml:1\): AWSClusterTemplate tiny \(classes\/tiny.yaml:\d+\)$/);
    const missing = await load({ 'cluster.yaml': CLUSTER.replace('class: tiny', 'class: tiyn') }, { 'tiny.yaml': CLASS });
    expect(missing.inputs).to.deep.equal(['classes']);
    expect(missing.lines).to.deep.equal([
      `clusters/test/cluster.yaml:7:12 Cluster/dev spec.topology.class: ClusterClass "tiyn" is not defined in this folder nor under classes/; did you mean \`tiny\`? hint: put the ClusterClass and its templates beside the Cluster, or in classes/ at the repository root`,
    ]);
  });

  it('a patch whose path does not exist in the template is reported at the patch\'s path line, naming the topology that hit it', async () => {
    const bad = CLASS.replace('path: /spec/template/spec/instanceType', 'path: /spec/template/spec/instanceTyp').replace('path: /spec/template/spec/bastion', 'path: /spec/template/spec/bastion/enabled');
    const { lines, model } = await load({ 'cluster.yaml': CLUSTER, 'class.yaml': bad });
    expect(model).to.equal(undefined);
    const replace = lineOf(bad, 'path: /spec/template/spec/instanceTyp');
    const add = lineOf(bad, 'path: /spec/template/spec/bastion/enabled');
    expect(lines).to.deep.equal([
      `clusters/test/class.yaml:${replace}:15 ClusterClass/tiny spec.patches[1].definitions[0].jsonPatches[0].path: patch workers: replace /spec/template/spec/instanceTyp: /spec/template/spec/instanceTyp does not exist in AWSMachineTemplate "tiny-small" (Cluster dev: machineDeployment md-0)`,
      `clusters/test/class.yaml:${replace}:15 ClusterClass/tiny spec.patches[1].definitions[0].jsonPatches[0].path: patch workers: replace /spec/template/spec/instanceTyp: /spec/template/spec/instanceTyp does not exist in AWSMachineTemplate "tiny-big" (Cluster dev: machineDeployment md-1)`,
      `clusters/test/class.yaml:${add}:15 ClusterClass/tiny spec.patches[2].definitions[0].jsonPatches[0].path: patch bastion: add /spec/template/spec/bastion/enabled: /spec/template/spec/bastion does not exist in AWSClusterTemplate "tiny" (Cluster dev: infrastructure)`,
    ]);
  });

  it('a variable value of the wrong type is reported at the value in the topology (nested fields too, overrides too)', async () => {
    const bad = CLUSTER.replace('value: t3.large', 'value: 5').replace('value: {size: 50}', 'value: {size: big}').replace('value: m5.2xlarge', 'value: [m5]');
    const { lines } = await load({ 'cluster.yaml': bad, 'class.yaml': CLASS });
    expect(lines).to.deep.equal([
      `clusters/test/cluster.yaml:${lineOf(bad, 'value: 5')}:14 Cluster/dev spec.topology.variables[0].value: variable workerType: must be string`,
      `clusters/test/cluster.yaml:${lineOf(bad, 'size: big')}:21 Cluster/dev spec.topology.variables[2].value.size: variable disk: must be integer`,
      `clusters/test/cluster.yaml:${lineOf(bad, 'value: [m5]')}:13 Cluster/dev spec.topology.workers.machineDeployments[1].variables.overrides[0].value: variable workerType: must be string`,
    ]);
  });

  it('names that resolve to nothing: an undefined variable, an unknown machineDeployment class, a required variable without value', async () => {
    const bad = CLUSTER.replace('- name: bastion', '- name: bastoin').replace('- class: big', '- class: huge');
    const noDefault = CLASS.replace('schema: {openAPIV3Schema: {type: string, default: us-east-1}}', 'schema: {openAPIV3Schema: {type: string}}');
    const { lines } = await load({ 'cluster.yaml': bad, 'class.yaml': noDefault });
    expect(lines).to.deep.equal([
      `clusters/test/cluster.yaml:${lineOf(bad, 'variables:')}:5 Cluster/dev spec.topology.variables: variable region is required by ClusterClass "tiny" and has no value nor default`,
      `clusters/test/cluster.yaml:${lineOf(bad, 'bastoin')}:13 Cluster/dev spec.topology.variables[1].name: variable bastoin is not defined by ClusterClass "tiny"; did you mean \`bastion\`?`,
      `clusters/test/cluster.yaml:${lineOf(bad, 'class: huge')}:16 Cluster/dev spec.topology.workers.machineDeployments[1].class: ClusterClass "tiny" has no machineDeployment class huge`,
    ]);
  });

  it('definitionsConflict: a variable defined twice in the class is an error at both definitions', async () => {
    const twice = CLASS.replace('  - name: bastion\n    required: false', '  - name: disk\n    required: false');
    const { lines } = await load({ 'cluster.yaml': CLUSTER.replace('    - name: bastion\n      value: true\n', ''), 'class.yaml': twice.replace('enabledIf: "{{ .bastion }}"', 'enabledIf: "true"') });
    const first = lineOf(twice, '- name: disk');
    const second = lineOf(twice, '- name: disk', 'default: gp3');
    expect(lines).to.deep.equal([
      `clusters/test/class.yaml:${first}:11 ClusterClass/tiny spec.variables[2].name: variable disk is defined twice in ClusterClass "tiny" (again at line ${second})`,
      `clusters/test/class.yaml:${second}:11 ClusterClass/tiny spec.variables[3].name: variable disk is defined twice in ClusterClass "tiny" (first at line ${first})`,
    ]);
  });

  it('Go templates outside the subset, and external patches, are refused at their line', async () => {
    const bad = CLASS.replace('enabledIf: "{{ .bastion }}"', 'enabledIf: "{{ if .bastion }}true{{ end }}"')
      .replace('valueFrom: {template: "{size: {{ .disk.size }}, type: {{ .disk.type }}}"}', 'valueFrom: {template: "{{ .disk.size | printf \\"%d\\" }}"}')
      .replace('  - name: region\n    definitions:', '  - name: region\n    external: {generateExtension: gen.ext}\n    definitions:');
    const { lines } = await load({ 'cluster.yaml': CLUSTER, 'class.yaml': bad });
    expect(lines).to.deep.equal([
      `clusters/test/class.yaml:${lineOf(bad, 'external:')}:5 ClusterClass/tiny spec.patches[0].external: patch region: external patches (Runtime SDK extensions) are not supported hint: write the patch inline as definitions with jsonPatches`,
      `clusters/test/class.yaml:${lineOf(bad, 'printf')}:31 ClusterClass/tiny spec.patches[1].definitions[0].jsonPatches[1].valueFrom.template: patch workers: {{ .disk.size | printf "%d" }} is outside the Go template subset capflow evaluates ({{ .variable }} and {{ .builtin.cluster.name }}-style field references)`,
      `clusters/test/class.yaml:${lineOf(bad, 'enabledIf')}:16 ClusterClass/tiny spec.patches[2].enabledIf: patch bastion: {{ if .bastion }} is outside the Go template subset capflow evaluates ({{ .variable }} and {{ .builtin.cluster.name }}-style field references)`,
    ]);
  });

  it('problems in the expanded documents point back at the template or the patch that wrote the value', async () => {
    const bad = CLASS.replace('      instanceType: t3.large\n      iamInstanceProfile: control', '      instanceType: t3.large\n      spotMarketOptoins: {}\n      iamInstanceProfile: control').replace(
      'value: {enabled: true}',
      'value: {enabled: yes-please}',
    );
    const { lines } = await load({ 'cluster.yaml': CLUSTER, 'class.yaml': bad });
    expect(lines).to.deep.equal([
      `clusters/test/class.yaml:${lineOf(bad, 'enabled: yes-please')}:26 AWSCluster/dev spec.bastion.enabled: must be boolean`,
      `clusters/test/class.yaml:${lineOf(bad, 'spotMarketOptoins')}:7 AWSMachineTemplate/dev-control-plane spec.template.spec.spotMarketOptoins: unknown field \`spotMarketOptoins\` (the API server would silently drop it); did you mean \`spotMarketOptions\`?`,
    ]);
  });

  it('a class change that changes the expansion changes the spec hash; a comment or an unused class does not', async () => {
    const hash = async (cls: string, extra: Record<string, string> = {}): Promise<string> => {
      const r = await load({ 'cluster.yaml': CLUSTER.replace('    - name: workerType\n      value: t3.large\n', '') }, { 'tiny.yaml': cls, ...extra });
      expect(r.lines).to.deep.equal([]);
      return specHash(r.model as ClusterModel);
    };
    const base = await hash(CLASS);
    expect(await hash(`# the team's class\n${CLASS.replace('  patches:', '  # patches below\n  patches:')}`)).to.equal(base);
    expect(await hash(CLASS, { 'other.yaml': CLASS.replace('name: tiny\n', 'name: other\n').replace('t3.medium', 't3.xlarge') })).to.equal(base);
    expect(await hash(CLASS.replace('default: t3.medium', 'default: t3.xlarge'))).to.not.equal(base);
  });

  it('the upstream simple-clusterclass: the class\'s worker template changed changes the hash; a comment, or a default the topology overrides, does not', async () => {
    const text = await readFile(path.join(V211, 'simple-clusterclass', 'cluster-template-simple-clusterclass.yaml'), 'utf8');
    const vars = await readFile(path.join(V211, 'cluster.vars'), 'utf8');
    const hash = async (t: string): Promise<string> => {
      const dir = await specFolder({ 'cluster.yaml': t, 'cluster.env': vars });
      const r = await validateClusterSpec(dir, { displayRoot: displayRootOf(dir) });
      expect(r.problems.filter((p) => p.severity === 'error').map(formatProblem)).to.deep.equal([]);
      return specHash(r.model as ClusterModel);
    };
    const edit = (from: string, to: string): string => {
      expect(text).to.include(from);
      return text.replace(from, to);
    };
    const base = await hash(text);
    expect(await hash(edit('  name: quick-start-worker-machinetemplate\n', '  name: quick-start-worker-machinetemplate # the workers\n'))).to.equal(base);
    // the topology sets workerMachineType: the class's default does not reach the expansion
    const workerDefault = text.lastIndexOf('default: t3.large');
    expect(await hash(`${text.slice(0, workerDefault)}default: m5.large${text.slice(workerDefault + 'default: t3.large'.length)}`)).to.equal(base);
    expect(await hash(edit('iamInstanceProfile: "nodes.cluster-api-provider-aws.sigs.k8s.io"', 'iamInstanceProfile: "workers.example.com"'))).to.not.equal(base);
    expect(await hash(edit('    - name: workerMachineType\n      value: ${AWS_NODE_MACHINE_TYPE}\n', ''))).to.equal(base, 'unset, the class default (t3.large) equals the value');
  });

  it('capflow render --expanded prints the expanded documents of the upstream simple-clusterclass', async () => {
    const r = await spawnCapflow(['render', '--expanded', path.join(V211, 'simple-clusterclass'), '--vars', path.join(V211, 'cluster.vars')]).done;
    expect(r.code, r.stderr).to.equal(0);
    const docs = r.stdout.split('\n---\n');
    expect(docs).to.have.length(9);
    expect(docs.map((d) => /^kind: (.*)$/m.exec(d)?.[1]).sort()).to.deep.equal(['AWSCluster', 'AWSMachineTemplate', 'AWSMachineTemplate', 'Cluster', 'ClusterResourceSet', 'ConfigMap', 'KubeadmConfigTemplate', 'KubeadmControlPlane', 'MachineDeployment']);
    for (const d of docs) expect(d).to.match(/^# test\/fixtures\/spec\/upstream-v2.11\/simple-clusterclass\/cluster-template-simple-clusterclass.yaml:\d+|^# expanded for Cluster capa-v211 /);
  });

  it('render --expanded prints each document under a comment saying where it came from', async () => {
    const { model } = await load({ 'cluster.yaml': CLUSTER, 'class.yaml': CLASS });
    const text = expandedYaml(model?.documents ?? []);
    expect(text.split('\n---\n')).to.have.length(10);
    expect(text).to.match(/^# clusters\/test\/cluster.yaml:1, its topology expanded with ClusterClass tiny \(clusters\/test\/class.yaml:1\)\napiVersion: cluster.x-k8s.io\/v1beta1\nkind: Cluster\n/);
    expect(text).to.include('# expanded for Cluster dev (topology at clusters/test/cluster.yaml:1) from ClusterClass tiny (clusters/test/class.yaml:1): machineDeployments[1] md-1\n');
  });

  it('machinePools: a MachinePool per topology entry, with its KubeadmConfig and AWSMachinePool made from the class\'s templates and patched by machinePoolClass', async () => {
    const withPools = CLASS.replace(
      '  variables:\n  - name: region\n',
      `    machinePools:
    - class: pool
      template:
        metadata: {labels: {tier: pool}}
        bootstrap:
          ref: {apiVersion: bootstrap.cluster.x-k8s.io/v1beta1, kind: KubeadmConfigTemplate, name: tiny-worker}
        infrastructure:
          ref: {apiVersion: infrastructure.cluster.x-k8s.io/v1beta2, kind: AWSMachinePoolTemplate, name: tiny-pool}
  variables:
  - name: region
`,
    ).replace(
      '  - name: bastion\n    enabledIf:',
      `  - name: pool
    definitions:
    - selector:
        apiVersion: infrastructure.cluster.x-k8s.io/v1beta2
        kind: AWSMachinePoolTemplate
        matchResources: {machinePoolClass: {names: [pool]}}
      jsonPatches:
      - op: replace
        path: /spec/template/spec/awsLaunchTemplate/instanceType
        valueFrom: {variable: workerType}
      - op: add
        path: /spec/template/spec/additionalTags
        valueFrom:
          template: "pool: {{ .builtin.machinePool.topologyName }}"
  - name: bastion
    enabledIf:`,
    ) + `---
apiVersion: infrastructure.cluster.x-k8s.io/v1beta2
kind: AWSMachinePoolTemplate
metadata:
  name: tiny-pool
spec:
  template:
    spec:
      minSize: 1
      maxSize: 5
      awsLaunchTemplate:
        instanceType: REPLACEME
        iamInstanceProfile: nodes.cluster-api-provider-aws.sigs.k8s.io
`;
    const topo = CLUSTER.replace('      machineDeployments:\n', `      machinePools:
      - class: pool
        name: mp-0
        replicas: 2
        variables:
          overrides:
          - name: workerType
            value: m6i.large
      machineDeployments:
`);
    const { model, lines } = await load({ 'cluster.yaml': topo, 'class.yaml': withPools });
    expect(lines).to.deep.equal([]);
    const mp = doc<{ metadata: { labels: Record<string, string> }; spec: { replicas: number; template: { metadata: { labels: Record<string, string> }; spec: Record<string, unknown> } } }>(model, 'MachinePool', 'dev-mp-0');
    expect(mp.spec.replicas).to.equal(2);
    expect(mp.spec.template.metadata.labels).to.include({ tier: 'pool', 'topology.cluster.x-k8s.io/pool-name': 'mp-0', 'cluster.x-k8s.io/cluster-name': 'dev' });
    expect(mp.spec.template.spec).to.deep.include({
      clusterName: 'dev',
      version: 'v1.33.4',
      bootstrap: { configRef: { apiVersion: 'bootstrap.cluster.x-k8s.io/v1beta1', kind: 'KubeadmConfig', name: 'dev-mp-0', namespace: 'default' } },
      infrastructureRef: { apiVersion: 'infrastructure.cluster.x-k8s.io/v1beta2', kind: 'AWSMachinePool', name: 'dev-mp-0', namespace: 'default' },
    });
    const pool = doc<{ spec: { minSize: number; maxSize: number; awsLaunchTemplate: { instanceType: string }; additionalTags: Record<string, string> } }>(model, 'AWSMachinePool', 'dev-mp-0');
    expect(pool.spec).to.deep.include({ minSize: 1, maxSize: 5, additionalTags: { pool: 'mp-0' } });
    expect(pool.spec.awsLaunchTemplate.instanceType, 'the override of workerType').to.equal('m6i.large');
    expect(doc<{ spec: { joinConfiguration: unknown } }>(model, 'KubeadmConfig', 'dev-mp-0').spec.joinConfiguration).to.deep.equal({ nodeRegistration: { name: '{{ ds.meta_data.local_hostname }}' } });
    expect(model!.machinePools.map((p) => [p.pool.metadata.name, p.infrastructure.kind, p.bootstrapConfig?.kind])).to.deep.equal([['dev-mp-0', 'AWSMachinePool', 'KubeadmConfig']]);

    // a patch path the pool template lacks is reported at the patch, naming the pool that hit it
    const bad = withPools.replace('path: /spec/template/spec/awsLaunchTemplate/instanceType', 'path: /spec/template/spec/launchTemplate/instanceType');
    const broken = await load({ 'cluster.yaml': topo, 'class.yaml': bad });
    expect(broken.lines).to.deep.equal([
      `clusters/test/class.yaml:${lineOf(bad, 'path: /spec/template/spec/launchTemplate/instanceType')}:15 ClusterClass/tiny spec.patches[2].definitions[0].jsonPatches[0].path: patch pool: replace /spec/template/spec/launchTemplate/instanceType: /spec/template/spec/launchTemplate does not exist in AWSMachinePoolTemplate "tiny-pool" (Cluster dev: machinePool mp-0)`,
    ]);
  });

  it('a ClusterClass the Cluster does not use is a warning, and a written Cluster keeps validating as before', async () => {
    const dir = await specFolder({ 'class.yaml': CLASS });
    const { problems } = await validateClusterSpec(dir, { displayRoot: displayRootOf(dir) });
    expect(problems.filter((p) => p.kind === 'ClusterClass').map(formatProblem)).to.deep.equal([
      'clusters/test/class.yaml:2:7 ClusterClass/tiny kind: warning: ClusterClass is not used: the folder\'s Cluster has no topology that names this class hint: a ClusterClass and its templates are expanded for a Cluster whose spec.topology.class names the class',
    ]);
  });
});

describe('ClusterClass patch engine: the Go template subset and JSON patches', () => {
  const render = (t: string, vars: Record<string, unknown>): unknown => {
    const parsed = parseGoTemplate(t);
    if ('error' in parsed) return parsed;
    return renderGoTemplate(parsed.pieces, vars);
  };

  it('prints field references, trims around {{- and -}}, and keeps other text (a lone }} too) as written', () => {
    const vars = { name: 'dev', builtin: { cluster: { name: 'c1' } }, n: 3, on: true };
    expect(render('{{ .builtin.cluster.name }}-{{.name}}', vars)).to.deep.equal({ text: 'c1-dev' });
    expect(render('a  {{- .n -}}  b }}', vars)).to.deep.equal({ text: 'a3b }}' });
    expect(render('{{ .on }}', vars)).to.deep.equal({ text: 'true' });
    expect(render('{{ .missing }}', vars)).to.deep.equal({ error: '.missing has no value' });
    expect(render('{{ .builtin }}', vars)).to.deep.equal({ error: '.builtin is an object; the template subset prints scalars only' });
    expect(render('{{ .name', vars)).to.deep.equal({ error: 'an unterminated {{ action' });
    expect(render('{{ range .x }}{{ end }}', vars)).to.have.property('error').that.match(/^\{\{ range \.x \}\} is outside the Go template subset/);
    expect(templateValue('3')).to.equal(3);
    expect(templateValue('{a: b}')).to.deep.equal({ a: 'b' });
  });

  it('a long run of text with an unterminated action is refused in linear time', () => {
    const started = performance.now();
    expect(parseGoTemplate(`{{${' '.repeat(2_000_000)}`)).to.deep.equal({ error: 'an unterminated {{ action' });
    expect(performance.now() - started).to.be.below(1000);
  });

  it('add, replace and remove as JSON patch (RFC 6902) defines them, lists included', () => {
    const t: Record<string, unknown> = { spec: { list: ['a', 'c'], m: { k: 1 } } };
    expect(applyJsonPatch(t, 'add', '/spec/list/1', 'b')).to.deep.equal({ path: ['spec', 'list', 1] });
    expect(applyJsonPatch(t, 'add', '/spec/list/-', 'd')).to.deep.equal({ path: ['spec', 'list', 3] });
    expect(applyJsonPatch(t, 'replace', '/spec/m/k', 2)).to.deep.equal({ path: ['spec', 'm', 'k'] });
    expect(applyJsonPatch(t, 'remove', '/spec/list/0', undefined)).to.deep.equal({ path: ['spec', 'list', 0] });
    expect(applyJsonPatch(t, 'add', '/spec/a~1b', 'slash')).to.deep.equal({ path: ['spec', 'a/b'] });
    expect(t).to.deep.equal({ spec: { list: ['b', 'c', 'd'], m: { k: 2 }, 'a/b': 'slash' } });
    expect(applyJsonPatch(t, 'replace', '/spec/list/7', 'x')).to.deep.equal({ error: 'replace /spec/list/7: index 7 does not exist in the list in' });
    expect(applyJsonPatch(t, 'remove', '/spec/nope', undefined)).to.deep.equal({ error: 'remove /spec/nope: /spec/nope does not exist in' });
    expect(applyJsonPatch(t, 'add', '/spec/x/y', 1)).to.deep.equal({ error: 'add /spec/x/y: /spec/x does not exist in' });
  });
});
