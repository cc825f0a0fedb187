import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DEFAULT_CONFIG } from '../../src/config/model.js';
import { unsupportedSettings } from '../../src/config/unsupported.js';

test('defaults (and hitch-compat.conf) ask for nothing node cannot do', () => {
  assert.deepEqual(unsupportedSettings(DEFAULT_CONFIG), []);
});

test('each option node cannot carry out is named once', () => {
  const found = unsupportedSettings({
    ...DEFAULT_CONFIG,
    recvBufferBytes: 65536,
    sendBufferBytes: 65536,
    tcpFastOpen: true,
    chroot: '/var/empty',
    // carried out since they were implemented: never reported
    daemon: true,
    syslog: true,
  });
  assert.deepEqual(
    found.map((setting) => setting.option),
    ['recv-bufsize', 'tcp-fastopen', 'chroot'],
  );
  for (const setting of found) assert.ok(setting.message.startsWith(`${setting.option}: `));
});
