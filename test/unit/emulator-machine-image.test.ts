/**
 * Which release a booting machine carries: the Kubernetes version its AMI's name names (CAPA's
 * capa-ami-<base OS>-v<version>-<timestamp>), when the supervisor has binaries of it; else the default.
 */
import { expect } from 'chai';
import { capaImageList } from '../../src/cli/local-aws.js';
import { imageKubernetesVersion, machineImageFor } from '../../src/emulator/supervisor.js';

describe('emulator: the Kubernetes version of a machine image', () => {
  it("reads the version from the AWS provider's image names, with or without the v", () => {
    expect(imageKubernetesVersion('capa-ami-ubuntu-24.04-v1.34.3-1732924800')).to.equal('v1.34.3');
    expect(imageKubernetesVersion('capa-ami-ubuntu-24.04-1.31.4-00')).to.equal('v1.31.4');
    expect(imageKubernetesVersion('capa-ami-flatcar-stable-3815.2.0-v1.34.4-1732924800'), 'the last version segment, not the base OS one').to.equal('v1.34.4');
    for (const name of (capaImageList(['v1.34.3', 'v1.34.4']) as Array<{ name: string }>).map((i) => i.name)) expect(imageKubernetesVersion(name)).to.match(/^v1\.34\.[34]$/);
    expect(imageKubernetesVersion('amzn2-ami-kernel-5.10-hvm-2.0.20231116.0-x86_64-gp2')).to.equal(undefined);
    expect(imageKubernetesVersion(undefined)).to.equal(undefined);
  });

  it("picks that version's bin dir when there is one, else the default binaries and version", () => {
    const opts = { kubeBinDir: '/bin/current', kubeletVersion: 'v1.34.4', kubeImages: { 'v1.34.3': '/bin/v1.34.3' } };
    expect(machineImageFor('capa-ami-ubuntu-24.04-v1.34.3-1732924800', opts)).to.deep.equal({ kubernetesVersion: 'v1.34.3', kubeBinDir: '/bin/v1.34.3' });
    expect(machineImageFor('capa-ami-ubuntu-24.04-v1.34.4-1732924800', opts)).to.deep.equal({ kubernetesVersion: 'v1.34.4', kubeBinDir: '/bin/current' });
    expect(machineImageFor('amzn2-ami-hvm', opts)).to.deep.equal({ kubernetesVersion: 'v1.34.4', kubeBinDir: '/bin/current' });
    expect(machineImageFor(undefined, { kubeBinDir: '/bin/current', kubeletVersion: 'v1.34.4' })).to.deep.equal({ kubernetesVersion: 'v1.34.4', kubeBinDir: '/bin/current' });
    expect(machineImageFor('capa-ami-ubuntu-24.04-v1.31.4-00', opts), 'a version no binaries are here for').to.deep.equal({ kubernetesVersion: 'v1.34.4', kubeBinDir: '/bin/current', notCarried: 'v1.31.4' });
  });
});
