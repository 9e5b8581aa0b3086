/**
 * What capflow's kubeadm bootstrap can render from a KubeadmConfigSpec, checked at validation so
 * that a spec it cannot boot is refused at its file:line before any step runs (src/bootstrap
 * refuses the same again, for callers that render without validating).
 */
import type { KubeadmConfigSpec, Rest } from './model.js';
import type { ProblemCode } from './problems.js';

/** `init`: the first control plane; `control-plane-join`: the other replicas; `worker-join`: MachineDeployments and MachinePools. */
export type BootstrapRole = 'init' | 'control-plane-join' | 'worker-join';

/** A field the renderer cannot render, relative to the KubeadmConfigSpec (codes as the spec loader's). */
export interface BootstrapProblem {
  path: Array<string | number>;
  code: ProblemCode;
  message: string;
}

/**
 * The instance data bootstrap data may name in `{{ ... }}` (cloud-init's jinja for EC2): the machine
 * substitutes these in its payload, which cloud-init does not render.
 */
export const INSTANCE_DATA_EXPRESSIONS = [
  'ds.meta_data.instance_id',
  'ds.meta_data.local_hostname',
  'ds.meta_data.local_ipv4',
  'ds.meta_data.placement.availability_zone',
  'v1.instance_id',
  'v1.local_hostname',
  'v1.availability_zone',
  'v1.region',
] as const;

const EXPRESSION = /\{\{\s*(.*?)\s*\}\}/g;

/** Everything in the spec the renderer refuses for this role, each at its field. */
export function bootstrapSpecProblems(spec: KubeadmConfigSpec, role: BootstrapRole): BootstrapProblem[] {
  const problems: BootstrapProblem[] = [];
  if (spec.format === 'ignition') {
    problems.push({ path: ['format'], code: 'unsupported-feature', message: 'format ignition is not supported yet: capflow renders cloud-config user data only' });
  }
  (spec.files ?? []).forEach((file, i) => {
    if (file.content !== undefined && file.contentFrom !== undefined) {
      problems.push({ path: ['files', i], code: 'invalid-value', message: `file ${file.path} has both content and contentFrom; keep one` });
    }
  });
  (spec.users ?? []).forEach((user, i) => {
    if (user.passwd !== undefined && user.passwdFrom !== undefined) {
      problems.push({ path: ['users', i], code: 'invalid-value', message: `user ${String(user.name)} has both passwd and passwdFrom; keep one` });
    }
    if (user.inactive !== undefined) {
      problems.push({
        path: ['users', i, 'inactive'],
        code: 'unsupported-feature',
        message: "inactive is not supported: cloud-init expects a number of days there, and Cluster API's boolean fails cloud-init's schema",
      });
    }
  });
  walkStrings(spec, [], (path, text) => {
    for (const m of text.matchAll(EXPRESSION)) {
      if ((INSTANCE_DATA_EXPRESSIONS as readonly string[]).includes(m[1]!)) continue;
      problems.push({
        path,
        code: 'unsupported-feature',
        message: `{{ ${m[1]} }} is not instance data capflow's bootstrap fills in; use one of ${INSTANCE_DATA_EXPRESSIONS.map((e) => `{{ ${e} }}`).join(', ')}`,
      });
    }
  });
  return [...problems, ...kubeadmSpecProblems(spec, role)];
}

/** What the kubeadm part of a spec asks that cannot be rendered for this role. */
export function kubeadmSpecProblems(spec: KubeadmConfigSpec, role: BootstrapRole): BootstrapProblem[] {
  const problems: BootstrapProblem[] = [];
  const join = spec.joinConfiguration;
  if (role === 'worker-join' && join?.controlPlane !== undefined) {
    // CABPK refuses it too: a worker that joins as a control plane would need the cluster's keys.
    problems.push({ path: ['joinConfiguration', 'controlPlane'], code: 'invalid-value', message: 'a worker cannot join as a control plane; remove joinConfiguration.controlPlane' });
  }
  if (role !== 'init' && record(record(join?.discovery).file).kubeConfig !== undefined) {
    problems.push({
      path: ['joinConfiguration', 'discovery', 'file', 'kubeConfig'],
      code: 'unsupported-feature',
      message: 'discovery by a generated kubeconfig file is not supported yet; use bootstrap token discovery (the default) or kubeConfigPath',
    });
  }
  return problems;
}

function walkStrings(value: unknown, path: Array<string | number>, visit: (path: Array<string | number>, text: string) => void): void {
  if (typeof value === 'string') visit(path, value);
  else if (Array.isArray(value)) value.forEach((v, i) => walkStrings(v, [...path, i], visit));
  else if (typeof value === 'object' && value !== null) for (const [k, v] of Object.entries(value)) walkStrings(v, [...path, k], visit);
}

function record(value: unknown): Rest {
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Rest) : {};
}
