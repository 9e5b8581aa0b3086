/**
 * The cluster's status secret: what each step made (ids, addresses), kept
 * for the steps after it and for teardown. One secret per cluster,
 * `capflow-<cluster>-status`, one key per step, JSON values.
 */
import type { SecretStore } from './secrets.js';

export function statusSecretName(clusterName: string): string {
  return `capflow-${clusterName}-status`;
}

export async function readStepStatus<T>(store: SecretStore, clusterName: string, step: string): Promise<T | undefined> {
  const data = await store.get(statusSecretName(clusterName));
  const raw = data?.[step];
  return raw === undefined ? undefined : (JSON.parse(raw) as T);
}

/** Replaces one step's entry, keeping the others. */
export async function writeStepStatus(store: SecretStore, clusterName: string, step: string, value: unknown): Promise<void> {
  const name = statusSecretName(clusterName);
  const data = { ...((await store.get(name)) ?? {}) };
  data[step] = JSON.stringify(value);
  await store.put(name, data, { 'capflow.io/cluster': clusterName });
}

export async function removeStepStatus(store: SecretStore, clusterName: string, step: string): Promise<void> {
  const name = statusSecretName(clusterName);
  const data = await store.get(name);
  if (!data || !(step in data)) return;
  delete data[step];
  if (Object.keys(data).length === 0) await store.delete(name);
  else await store.put(name, data, { 'capflow.io/cluster': clusterName });
}
