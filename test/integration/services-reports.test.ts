/**
 * The root primary takes nothing from the unprivileged services process on trust: a
 * report with a field of the wrong kind is refused with its code, the process that sent
 * it is killed (and restarted), and the primary goes on. Before, the report's handler
 * read the field as it came and threw in the primary's IPC listener: a crash of root.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { test } from 'node:test';
import { OcspService } from '../../src/cluster/ocsp-service.js';
import { ServicesProcess } from '../../src/cluster/services-process.js';
import { DEFAULT_CONFIG } from '../../src/config/model.js';
import { localhostCertificate } from '../kit/pki.js';
import { CapturedLog, waitFor } from '../kit/proxy-fixture.js';

const ROGUE = resolve(import.meta.dirname, '../fixtures/rogue-services.js');

test('a malformed OCSP report from the services process is refused; the primary lives on', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'unhitch-services-reports-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const log = new CapturedLog();
  const config = { ...DEFAULT_CONFIG, source: '<test>', ocspDir: dir };
  const services = new ServicesProcess({ logger: log.logger, config: () => config, entry: ROGUE });
  t.after(() => services.stop());
  let exits = 0;
  services.onExit(() => {
    exits += 1;
  });
  const ocsp = new OcspService(log.logger, services);
  ocsp.start(config, [localhostCertificate().material]);
  services.start();
  await waitFor(
    () => log.lines.some((line) => line.code === 'UNHITCH_SERVICES_REPORT_INVALID'),
    30_000,
    'the malformed report refused',
  );
  const [line] = log.lines.filter((l) => l.code === 'UNHITCH_SERVICES_REPORT_INVALID');
  assert.equal(line?.problem, 'malformed unhitch:ocsp-response report');
  await waitFor(() => exits >= 1, 30_000, 'the services process that sent it killed');
  assert.deepEqual(readdirSync(dir), [], 'nothing written to ocsp-dir');
});
