// The addons of the install-addons tests and of the crash suite's install-addons scenarios: one
// ClusterResourceSet and two releases of the test chart (test/fixtures/charts/tiny) in namespace apps.

/** A ClusterResourceSet whose ConfigMap holds `manifest`, and charts db and web (web after db). */
export function addonsYaml(o: { manifest?: string; webValues?: string; web?: boolean; dbExtra?: string } = {}): string {
  const manifest = o.manifest ?? 'apiVersion: v1\n    kind: ConfigMap\n    metadata:\n      name: base-settings\n      namespace: kube-system\n    data:\n      mode: base';
  return `apiVersion: addons.cluster.x-k8s.io/v1beta1
kind: ClusterResourceSet
metadata:
  name: base
spec:
  strategy: Reconcile
  clusterSelector:
    matchLabels:
      cni: calico
  resources:
  - kind: ConfigMap
    name: base-manifests
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: base-manifests
data:
  base.yaml: |
    ${manifest}
---
apiVersion: capflow.io/v1alpha1
kind: AddonChart
metadata:
  name: db
spec:
  path: charts/tiny
  namespace: apps
  timeout: 60s
  values:
    settings:
      role: db${o.dbExtra ?? ''}
${o.web === false ? '' : `---
apiVersion: capflow.io/v1alpha1
kind: AddonChart
metadata:
  name: web
spec:
  path: charts/tiny
  namespace: apps
  timeout: 60s
  dependsOn: [db]
  values:
    replicas: 2
    settings:
      color: ${o.webValues ?? 'blue'}
`}`;
}
