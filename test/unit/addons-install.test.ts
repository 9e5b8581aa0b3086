import { expect } from 'chai';
import { goDuration } from '../../src/addons/install.js';

describe('addons/install: an AddonChart timeout as the CRD\'s format: duration takes it', () => {
  it('reads Go durations, compound ones too, in milliseconds', () => {
    expect(goDuration('5m')).to.equal(300_000);
    expect(goDuration('90s')).to.equal(90_000);
    expect(goDuration('1h30m')).to.equal(5_400_000);
    expect(goDuration('1.5s')).to.equal(1500);
    expect(goDuration('250ms')).to.equal(250);
  });

  it('gives undefined for no value or a malformed one (the default then applies)', () => {
    expect(goDuration(undefined)).to.equal(undefined);
    expect(goDuration('')).to.equal(undefined);
    expect(goDuration('5 minutes')).to.equal(undefined);
    expect(goDuration('m5')).to.equal(undefined);
  });
});
