import type { Agent } from 'node:http';
import type { RequestOptions } from 'node:https';
import { KubeConfig } from '@kubernetes/client-node';
import { expect } from 'chai';
import { shareAgents } from '../../src/gitops/kube.js';

function kubeConfig(ca: string, user: { token?: string; certData?: string } = { token: 't' }): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: 'c', server: 'https://127.0.0.1:6443', caData: Buffer.from(ca).toString('base64') }],
    users: [{ name: 'u', ...user }],
    contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
    currentContext: 'x',
  });
  return kc;
}

async function agentOf(kc: KubeConfig): Promise<Agent> {
  const opts: RequestOptions = {};
  await kc.applyToHTTPSOptions(opts);
  return opts.agent as Agent;
}

describe('gitops kube: one keep-alive agent per cluster and TLS identity', () => {
  it('without it the client makes a new agent per request (what shareAgents is for)', async () => {
    const kc = kubeConfig('CA-1');
    expect(await agentOf(kc)).to.not.equal(await agentOf(kc));
  });

  it('reuses one keep-alive agent for every request', async () => {
    const kc = shareAgents(kubeConfig('CA-1'));
    const a = await agentOf(kc);
    expect(await agentOf(kc)).to.equal(a);
    expect((a as Agent & { keepAlive?: boolean }).keepAlive).to.equal(true);
  });

  it('a different CA or client certificate gets its own agent; a new token (a header) does not', async () => {
    const kc = shareAgents(kubeConfig('CA-1', { token: 'one' }));
    const a = await agentOf(kc);
    kc.users[0] = { ...kc.users[0]!, token: 'two' };
    expect(await agentOf(kc), 'new token').to.equal(a);
    kc.users[0] = { ...kc.users[0], certData: Buffer.from('CERT').toString('base64') };
    const b = await agentOf(kc);
    expect(b, 'client certificate').to.not.equal(a);
    kc.clusters[0] = { ...kc.clusters[0]!, caData: Buffer.from('CA-2').toString('base64') };
    const c = await agentOf(kc);
    expect(c, 'CA').to.not.equal(b).and.to.not.equal(a);
    expect(await agentOf(kc)).to.equal(c);
  });
});
