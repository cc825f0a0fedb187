/**
 * testssl.sh against unhitch with its default TLS settings, on loopback: findings counted
 * by severity, the LOW-and-above ones listed, written to RESULTS.md (section "testssl") and
 * results/testssl.md in the results directory (bench/out/; bench/ with --update-results). Exits 1 when a HIGH or CRITICAL finding is about
 * unhitch's TLS (not about the loopback test certificate or the backend's HTTP).
 *
 *   node dist/bench/testssl.js [--testssl=/usr/bin/testssl] [--no-write]
 *
 * Needs testssl.sh (Debian package testssl.sh, binary `testssl`). Both children are stopped
 * by PID however this ends (the bench process harness).
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { issue, makeCa } from '../../test/kit/pki.js';
import { freePort, waitForPort } from '../../test/kit/ports.js';
import { TESTSSL_BATCH_ARGS } from '../../test/kit/testssl.js';
import { runBench } from '../lib/harness.js';
import { startProcess, stopProcess, untilReady } from '../lib/processes.js';
import { unhitchArgs } from '../lib/proxies.js';

const TESTSSL_TIMEOUT_MS = 15 * 60_000;
/** Long enough that scanners do not flag it as about to expire (they warn below 30 days). */
const VALID_DAYS = 90;
/**
 * Shaped like a real server certificate (serverAuth, a CRL distribution point) and signed by
 * a throwaway CA the scan is told to trust: testssl then judges the TLS server, not the fact
 * that a loopback test certificate is self-signed.
 */
const SCANNED_CERTIFICATE = {
  dnsNames: ['localhost'],
  ipAddresses: ['127.0.0.1'],
  extensions: [
    'keyUsage=critical,digitalSignature',
    'extendedKeyUsage=serverAuth',
    // Never fetched (the scan does not phone out); its presence is what a scanner checks.
    'crlDistributionPoints=URI:http://127.0.0.1/unhitch-test-ca.crl',
  ],
  days: VALID_DAYS,
} as const;

export const SEVERITIES = [
  'CRITICAL',
  'HIGH',
  'MEDIUM',
  'LOW',
  'WARN',
  'FATAL',
  'OK',
  'INFO',
] as const;
export type Severity = (typeof SEVERITIES)[number];

export interface Finding {
  readonly id: string;
  readonly severity: string;
  readonly finding: string;
}

/** testssl's --jsonfile output: a flat array of findings (tolerates the "pretty" object form). */
export function parseFindings(jsonText: string): Finding[] {
  const parsed: unknown = JSON.parse(jsonText);
  const list = Array.isArray(parsed)
    ? parsed
    : ((parsed as { scanResult?: unknown[] }).scanResult ?? []);
  return list
    .filter((item): item is Record<string, unknown> => typeof item === 'object' && item !== null)
    .map((item) => ({
      id: String(item.id ?? ''),
      severity: String(item.severity ?? 'INFO').toUpperCase(),
      finding: String(item.finding ?? ''),
    }));
}

export function countBySeverity(findings: readonly Finding[]): Map<string, number> {
  const counts = new Map<string, number>(SEVERITIES.map((severity) => [severity, 0]));
  for (const finding of findings)
    counts.set(finding.severity, (counts.get(finding.severity) ?? 0) + 1);
  return counts;
}

/**
 * Findings about the loopback test certificate (self-signed, no CRL/OCSP/CT/CAA) or about
 * the HTTP application behind the proxy (HSTS, headers): not properties of unhitch.
 */
export function isOutOfScope(finding: Finding): boolean {
  return (
    /^(cert_|OCSP_|DNS_CAArecord$|certificate_transparency$|intermediate_cert)/.test(finding.id) ||
    /^(HSTS|HPKP|security_headers|banner_|cookie_|X-)/.test(finding.id)
  );
}

/** HIGH or CRITICAL findings that are about unhitch's TLS itself. */
export function severeFindings(findings: readonly Finding[]): Finding[] {
  return findings.filter(
    (finding) =>
      (finding.severity === 'HIGH' || finding.severity === 'CRITICAL') && !isOutOfScope(finding),
  );
}

/** Every severity that is a problem of some size: all but OK and INFO. */
const NOTABLE: ReadonlySet<string> = new Set(
  SEVERITIES.filter((severity) => severity !== 'OK' && severity !== 'INFO'),
);

export function summaryMarkdown(findings: readonly Finding[], meta: string): string {
  const counts = countBySeverity(findings);
  const lines = [
    '## testssl.sh against unhitch (default TLS settings)',
    '',
    meta,
    '',
    '| severity | findings |',
    '|---|---:|',
    ...[...counts].map(([severity, count]) => `| ${severity} | ${count} |`),
    '',
  ];
  const notable = findings.filter((finding) => NOTABLE.has(finding.severity));
  if (notable.length > 0) {
    lines.push('| severity | id | finding | about |', '|---|---|---|---|');
    for (const finding of notable) {
      const text = finding.finding.replace(/\|/g, '\\|').replace(/\s+/g, ' ').slice(0, 160);
      const about = isOutOfScope(finding) ? 'test certificate / backend app' : 'unhitch TLS';
      lines.push(`| ${finding.severity} | ${finding.id} | ${text} | ${about} |`);
    }
    lines.push('');
  }
  return lines.join('\n');
}

/** A backend that answers any request with a tiny HTTP response (testssl probes HTTP). */
async function httpishBackend(): Promise<{ server: Server; port: number }> {
  const server = createServer((socket) => {
    socket.on('error', () => {});
    socket.once('data', () => {
      socket.end('HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok');
    });
  });
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  const address = server.address();
  if (typeof address !== 'object' || address === null) throw new Error('backend not listening');
  return { server, port: address.port };
}

// Imported only by its entry, bench/testssl.ts: it runs on import.
{
  const testssl =
    process.argv.find((arg) => arg.startsWith('--testssl='))?.slice(10) ?? '/usr/bin/testssl';
  if (!existsSync(testssl)) {
    console.error(`${testssl} not found: apt-get install testssl.sh`);
    process.exitCode = 2;
  } else {
    runBench({
      name: 'testssl',
      flags: ['testssl', 'no-write'],
      defaultProxies: [],
      run: async (bench) => {
        const dir = bench.workDirectory;
        const ca = makeCa('unhitch-loopback-test-CA', VALID_DAYS);
        const cert = issue(ca, 'localhost', SCANNED_CERTIFICATE);
        const backend = await httpishBackend();
        const port = await freePort();
        const unhitch = startProcess({
          name: 'unhitch',
          command: process.execPath,
          args: unhitchArgs({
            frontendPort: port,
            backendPort: backend.port,
            workers: 1,
            logLevel: 'error',
            pemPath: cert.combinedPath,
          }),
          echoStderr: true,
        });
        try {
          await untilReady(unhitch, waitForPort(port, 15_000));
          const jsonPath = join(dir, 'testssl.json');
          const started = Date.now();
          const scan = startProcess({
            name: 'testssl',
            command: testssl,
            args: [
              '--jsonfile',
              jsonPath,
              ...TESTSSL_BATCH_ARGS,
              '--add-ca',
              ca.certPath,
              `localhost:${port}`,
            ],
            echoStderr: true,
          });
          const timer = setTimeout(() => void scan.stop(), TESTSSL_TIMEOUT_MS);
          const status = await scan.exited;
          clearTimeout(timer);
          const seconds = Math.round((Date.now() - started) / 1000);
          if (!existsSync(jsonPath)) throw new Error(`testssl wrote no JSON (exit ${status})`);
          const findings = parseFindings(readFileSync(jsonPath, 'utf8'));
          const version =
            findings.find((finding) => finding.id === 'version')?.finding ?? 'testssl.sh';
          const meta = `${new Date().toISOString().slice(0, 10)}; ${version}; target 127.0.0.1 (unhitch, 1 worker, ECDSA P-256 certificate from a throwaway CA passed with --add-ca, defaults: TLSv1.2+1.3, EECDH+AESGCM:EDH+AESGCM); scan ${seconds} s, exit ${status}. Certificate findings a loopback test certificate cannot avoid (CT, CAA) and the backend's HTTP headers are not about unhitch.`;
          const markdown = summaryMarkdown(findings, meta);
          const severe = severeFindings(findings);
          for (const finding of severe)
            console.error(`${finding.severity}: ${finding.id}: ${finding.finding}`);
          return {
            stdout: markdown,
            // Its own layout: the scan's meta line stands where other sections list the machine.
            results: markdown,
            writeFiles: (directory) => {
              const path = join(directory, 'testssl.md');
              writeFileSync(path, `${markdown}\n`);
              return [path];
            },
            exitStatus: severe.length > 0 ? 1 : 0,
          };
        } finally {
          await stopProcess(unhitch);
          backend.server.close();
        }
      },
    });
  }
}
