/**
 * Where secrets live: Kubernetes Secrets in the management cluster when
 * running there, a local directory of 0600 files under the local runner.
 * Secrets never go to logs, parameters or stdout; steps pass their names.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import os from 'node:os';
import { randomUUID } from 'node:crypto';
import type { CoreV1Api } from '@kubernetes/client-node';
import { InputError } from './errors.js';
import { statusOf, wrapKubeError } from './kube-errors.js';

export type SecretData = Record<string, string>;

export interface PutOptions {
  /** The Secret's type; `Opaque` when not given. Cluster API's own are `cluster.x-k8s.io/secret`. */
  type?: string;
}

export interface SecretStore {
  readonly kind: 'local' | 'kubernetes';
  get(name: string): Promise<SecretData | undefined>;
  /** Creates or replaces the whole secret. */
  put(name: string, data: SecretData, labels?: Record<string, string>, options?: PutOptions): Promise<void>;
  /**
   * Creates the secret only if no secret of that name exists, atomically (of two concurrent
   * creates, exactly one succeeds): true when created, false when it already existed.
   */
  create(name: string, data: SecretData, labels?: Record<string, string>, options?: PutOptions): Promise<boolean>;
  delete(name: string): Promise<void>;
  list(prefix?: string): Promise<string[]>;
}

const SECRET_NAME = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;

function checkName(name: string): void {
  if (!SECRET_NAME.test(name)) {
    throw new InputError('SECRET_NAME_INVALID', `secret name "${name}" is not a DNS-1123 subdomain`);
  }
}

export function defaultLocalSecretsDir(): string {
  return process.env.CAPFLOW_SECRETS_DIR ?? path.join(os.homedir(), '.capflow', 'secrets');
}

/** One JSON file per secret ({type, labels, data}), 0600 in a 0700 directory, written atomically. */
export class LocalSecretStore implements SecretStore {
  readonly kind = 'local' as const;
  constructor(readonly dir: string = defaultLocalSecretsDir()) {}

  private file(name: string): string {
    checkName(name);
    return path.join(this.dir, `${name}.json`);
  }

  async get(name: string): Promise<SecretData | undefined> {
    try {
      const text = await fs.readFile(this.file(name), 'utf8');
      return (JSON.parse(text) as { data: SecretData }).data;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
  }

  async put(name: string, data: SecretData, labels: Record<string, string> = {}, options: PutOptions = {}): Promise<void> {
    await fs.mkdir(this.dir, { recursive: true, mode: 0o700 });
    await fs.chmod(this.dir, 0o700);
    const target = this.file(name);
    const tmp = `${target}.${process.pid}.${randomUUID()}.tmp`;
    await fs.writeFile(tmp, JSON.stringify({ type: options.type ?? 'Opaque', labels, data }, null, 2), { mode: 0o600 });
    await fs.rename(tmp, target);
  }

  /** A hard link of a complete temp file: the name appears whole or not at all, and only once (EEXIST). */
  async create(name: string, data: SecretData, labels: Record<string, string> = {}, options: PutOptions = {}): Promise<boolean> {
    await fs.mkdir(this.dir, { recursive: true, mode: 0o700 });
    await fs.chmod(this.dir, 0o700);
    const target = this.file(name);
    const tmp = `${target}.${process.pid}.${randomUUID()}.tmp`;
    try {
      await fs.writeFile(tmp, JSON.stringify({ type: options.type ?? 'Opaque', labels, data }, null, 2), { mode: 0o600, flag: 'wx' });
      await fs.link(tmp, target);
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
      throw err;
    } finally {
      await fs.rm(tmp, { force: true });
    }
  }

  async delete(name: string): Promise<void> {
    await fs.rm(this.file(name), { force: true });
  }

  async list(prefix = ''): Promise<string[]> {
    try {
      const names = await fs.readdir(this.dir);
      return names.filter((n) => n.endsWith('.json')).map((n) => n.slice(0, -5)).filter((n) => n.startsWith(prefix)).sort();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
  }
}

/** Writes kept in memory over a store that is only read: what a dry run would write stays here. */
export class OverlayStore implements SecretStore {
  private readonly written = new Map<string, SecretData | undefined>();
  constructor(private readonly base: SecretStore) {}

  get kind(): SecretStore['kind'] {
    return this.base.kind;
  }

  async get(name: string): Promise<SecretData | undefined> {
    return this.written.has(name) ? this.written.get(name) : this.base.get(name);
  }

  async put(name: string, data: SecretData): Promise<void> {
    this.written.set(name, { ...data });
  }

  /** Create-if-absent against what this overlay sees (its own writes over the base); never writes the base. */
  async create(name: string, data: SecretData): Promise<boolean> {
    if ((await this.get(name)) !== undefined) return false;
    this.written.set(name, { ...data });
    return true;
  }

  async delete(name: string): Promise<void> {
    this.written.set(name, undefined);
  }

  async list(prefix = ''): Promise<string[]> {
    const names = new Set(await this.base.list(prefix));
    for (const [name, data] of this.written) {
      if (!name.startsWith(prefix)) continue;
      if (data) names.add(name);
      else names.delete(name);
    }
    return [...names].sort();
  }
}

/** Kubernetes Secrets in one namespace (type Opaque unless told), labelled as capflow's. */
export class KubernetesSecretStore implements SecretStore {
  readonly kind = 'kubernetes' as const;
  private api: Promise<CoreV1Api> | undefined;

  constructor(
    readonly namespace: string,
    private readonly kubeconfigPath?: string,
  ) {}

  private core(): Promise<CoreV1Api> {
    this.api ??= import('@kubernetes/client-node').then((k8s) => {
      const kc = new k8s.KubeConfig();
      if (this.kubeconfigPath) kc.loadFromFile(this.kubeconfigPath);
      else kc.loadFromDefault();
      return kc.makeApiClient(k8s.CoreV1Api);
    });
    return this.api;
  }

  async get(name: string): Promise<SecretData | undefined> {
    checkName(name);
    try {
      const secret = await (await this.core()).readNamespacedSecret({ name, namespace: this.namespace });
      const out: SecretData = {};
      for (const [k, v] of Object.entries(secret.data ?? {})) out[k] = Buffer.from(v, 'base64').toString('utf8');
      return out;
    } catch (err) {
      if (statusOf(err) === 404) return undefined;
      throw wrapKubeError(err, `reading secret ${this.namespace}/${name}`, { verb: 'get', resource: 'secrets', namespace: this.namespace });
    }
  }

  async put(name: string, data: SecretData, labels: Record<string, string> = {}, options: PutOptions = {}): Promise<void> {
    checkName(name);
    const api = await this.core();
    // the type is immutable once created: a replace with another type is refused by the API server
    const body = this.body(name, data, labels, options);
    try {
      await api.replaceNamespacedSecret({ name, namespace: this.namespace, body });
    } catch (err) {
      if (statusOf(err) !== 404) throw wrapKubeError(err, `writing secret ${this.namespace}/${name}`, { verb: 'update', resource: 'secrets', namespace: this.namespace });
      await api.createNamespacedSecret({ namespace: this.namespace, body });
    }
  }

  private body(name: string, data: SecretData, labels: Record<string, string>, options: PutOptions) {
    return {
      apiVersion: 'v1',
      kind: 'Secret',
      type: options.type ?? 'Opaque',
      metadata: { name, namespace: this.namespace, labels: { 'app.kubernetes.io/managed-by': 'capflow', ...labels } },
      stringData: data,
    };
  }

  /** createNamespacedSecret: the API server refuses a second create of one name (409 AlreadyExists). */
  async create(name: string, data: SecretData, labels: Record<string, string> = {}, options: PutOptions = {}): Promise<boolean> {
    checkName(name);
    const api = await this.core();
    const body = this.body(name, data, labels, options);
    try {
      await api.createNamespacedSecret({ namespace: this.namespace, body });
      return true;
    } catch (err) {
      if (statusOf(err) === 409) return false;
      throw wrapKubeError(err, `creating secret ${this.namespace}/${name}`, { verb: 'create', resource: 'secrets', namespace: this.namespace });
    }
  }

  async delete(name: string): Promise<void> {
    checkName(name);
    try {
      await (await this.core()).deleteNamespacedSecret({ name, namespace: this.namespace });
    } catch (err) {
      if (statusOf(err) !== 404) throw wrapKubeError(err, `deleting secret ${this.namespace}/${name}`, { verb: 'delete', resource: 'secrets', namespace: this.namespace });
    }
  }

  async list(prefix = ''): Promise<string[]> {
    const res = await (await this.core()).listNamespacedSecret({
      namespace: this.namespace,
      labelSelector: 'app.kubernetes.io/managed-by=capflow',
    });
    return res.items.map((s) => s.metadata?.name ?? '').filter((n) => n.startsWith(prefix)).sort();
  }
}

/**
 * Picks the store: CAPFLOW_SECRET_STORE=kubernetes|local wins; inside a pod
 * (KUBERNETES_SERVICE_HOST) it is Kubernetes; otherwise local files.
 */
export function secretStoreFromEnv(env: NodeJS.ProcessEnv = process.env): SecretStore {
  const choice = env.CAPFLOW_SECRET_STORE ?? (env.KUBERNETES_SERVICE_HOST ? 'kubernetes' : 'local');
  if (choice === 'kubernetes') {
    return new KubernetesSecretStore(env.CAPFLOW_NAMESPACE ?? 'capflow-system', env.CAPFLOW_KUBECONFIG);
  }
  if (choice !== 'local') {
    throw new InputError('SECRET_STORE_UNKNOWN', `CAPFLOW_SECRET_STORE must be "kubernetes" or "local", not "${choice}"`);
  }
  return new LocalSecretStore(env.CAPFLOW_SECRETS_DIR ?? defaultLocalSecretsDir());
}
