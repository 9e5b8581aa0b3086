// kube-vip's static pod for ARP control-plane mode, and which kubeconfig it mounts.

import { expect } from 'chai';
import type { V1Pod } from '@kubernetes/client-node';
import { parse } from 'yaml';
import { isCapflowError } from '../../src/core/errors.js';
import { KUBE_VIP_IMAGE, kubeVipKubeconfigPath, kubeVipManifest } from '../../src/hosts/kube-vip.js';

function envOf(pod: V1Pod): Record<string, string | undefined> {
  return Object.fromEntries((pod.spec?.containers[0]?.env ?? []).map((e) => [e.name, e.value]));
}

describe('hosts/kube-vip: static pod manifest', () => {
  it('renders the ARP control-plane pod kube-vip documents', () => {
    const pod = parse(kubeVipManifest({ address: '10.0.0.100', interface: 'eth0', kubeconfigPath: '/etc/kubernetes/super-admin.conf' })) as V1Pod;
    expect(pod).to.include({ apiVersion: 'v1', kind: 'Pod' });
    expect(pod.metadata).to.deep.equal({ name: 'kube-vip', namespace: 'kube-system' });
    expect(pod.spec?.hostNetwork).to.equal(true);
    expect(pod.spec?.hostAliases).to.deep.equal([{ ip: '127.0.0.1', hostnames: ['kubernetes'] }]);
    const c = pod.spec!.containers[0]!;
    expect(c).to.include({ name: 'kube-vip', image: KUBE_VIP_IMAGE, imagePullPolicy: 'IfNotPresent' });
    expect(KUBE_VIP_IMAGE).to.equal('ghcr.io/kube-vip/kube-vip:v0.8.9');
    expect(c.args).to.deep.equal(['manager']);
    expect(c.securityContext?.capabilities?.add).to.deep.equal(['NET_ADMIN', 'NET_RAW']);
    expect(envOf(pod)).to.include({
      vip_arp: 'true',
      port: '6443',
      vip_interface: 'eth0',
      vip_cidr: '32',
      dns_mode: 'first',
      cp_enable: 'true',
      cp_namespace: 'kube-system',
      vip_leaderelection: 'true',
      vip_leasename: 'plndr-cp-lock',
      vip_leaseduration: '5',
      vip_renewdeadline: '3',
      vip_retryperiod: '1',
      address: '10.0.0.100',
    });
    expect(c.env?.find((e) => e.name === 'vip_nodename')?.valueFrom?.fieldRef?.fieldPath).to.equal('spec.nodeName');
    expect(envOf(pod)).not.to.have.property('svc_enable');
    // The host's kubeconfig appears where kube-vip reads it, admin.conf in the container.
    expect(c.volumeMounts).to.deep.equal([{ name: 'kubeconfig', mountPath: '/etc/kubernetes/admin.conf' }]);
    expect(pod.spec?.volumes).to.deep.equal([{ name: 'kubeconfig', hostPath: { path: '/etc/kubernetes/super-admin.conf' } }]);
    // Env values are strings in YAML too (a bare true or 6443 would not make a valid EnvVar).
    expect(kubeVipManifest({ address: '10.0.0.100', kubeconfigPath: '/k' })).to.contain("value: \"6443\"");
  });

  it('takes a port, an image, an IPv6 address; without an interface kube-vip picks it', () => {
    const pod = parse(kubeVipManifest({ address: 'fd00::10', port: 8443, image: 'registry.local/kube-vip:v0.8.9', kubeconfigPath: '/etc/kubernetes/admin.conf' })) as V1Pod;
    expect(pod.spec?.containers[0]?.image).to.equal('registry.local/kube-vip:v0.8.9');
    expect(envOf(pod)).to.include({ port: '8443', vip_cidr: '128', address: 'fd00::10' });
    expect(envOf(pod)).not.to.have.property('vip_interface');
  });

  it('refuses an address that is not an IP, or a bad port', () => {
    for (const o of [{ address: 'vip.example' }, { address: '10.0.0.1', port: 70000 }]) {
      let err: unknown;
      try {
        kubeVipManifest({ ...o, kubeconfigPath: '/k' });
      } catch (e) {
        err = e;
      }
      expect(isCapflowError(err) && err.kind, JSON.stringify(o)).to.equal('invalid-input');
    }
  });

  it('mounts super-admin.conf on the first control plane of Kubernetes >= 1.29, admin.conf otherwise', () => {
    expect(kubeVipKubeconfigPath('v1.31.4', 'init')).to.equal('/etc/kubernetes/super-admin.conf');
    expect(kubeVipKubeconfigPath('1.29.0', 'init')).to.equal('/etc/kubernetes/super-admin.conf');
    expect(kubeVipKubeconfigPath('v1.31.4', 'join')).to.equal('/etc/kubernetes/admin.conf');
    expect(kubeVipKubeconfigPath('v1.28.15', 'init')).to.equal('/etc/kubernetes/admin.conf');
    expect(() => kubeVipKubeconfigPath('latest', 'init')).to.throw(/not a version/);
  });
});
