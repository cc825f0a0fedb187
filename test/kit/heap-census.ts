/**
 * Counts live objects by constructor name in another node process, from a heap snapshot
 * it writes on a signal. Leak tests use it: RSS moves with V8's heap sizing and malloc, so
 * it only shows a large leak, while a snapshot (taken after a full GC) shows every socket
 * or connection that something still holds.
 *
 * The process must be started with `censusNodeOptions(dir)` in NODE_OPTIONS.
 */
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { waitFor } from './proxy-fixture.js';

const SNAPSHOT_SIGNAL = 'SIGUSR2';

export interface HeapCensus {
  /** Where snapshots are written; removed by `cleanup()`. */
  readonly dir: string;
  /** NODE_OPTIONS for the process to be counted. */
  readonly nodeOptions: string;
  /** Asks `pid` for a snapshot and counts the objects whose constructor is in `names`. */
  count(pid: number, names: readonly string[], timeoutMs?: number): Promise<Map<string, number>>;
  /**
   * Asks `pid` for a snapshot and sums its nodes' self sizes: `total`, and per kind
   * (`object:Constructor`, `closure:name`, or the node type: `hidden`, `array`, ...).
   */
  tally(pid: number, timeoutMs?: number): Promise<HeapTally>;
  cleanup(): void;
}

export interface HeapTally {
  readonly totalBytes: number;
  readonly byKind: Map<string, { count: number; bytes: number }>;
}

interface HeapSnapshotFile {
  readonly snapshot: {
    readonly meta: {
      readonly node_fields: string[];
      readonly node_types: [string[], ...unknown[]];
    };
  };
  readonly nodes: number[];
  readonly strings: string[];
}

export function heapCensus(): HeapCensus {
  const dir = mkdtempSync(join(tmpdir(), 'unhitch-heap-'));
  // As root the workers run as nobody (unhitch refuses root workers) and write here.
  chmodSync(dir, 0o1777);
  return {
    dir,
    nodeOptions: `--heapsnapshot-signal=${SNAPSHOT_SIGNAL} --diagnostic-dir=${dir}`,
    async count(pid, names, timeoutMs = 30_000) {
      return countByName(await snapshot(dir, pid, timeoutMs), names);
    },
    async tally(pid, timeoutMs = 30_000) {
      return tallyBySize(await snapshot(dir, pid, timeoutMs));
    },
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}

async function snapshot(dir: string, pid: number, timeoutMs: number): Promise<HeapSnapshotFile> {
  const before = new Set(readdirSync(dir));
  process.kill(pid, SNAPSHOT_SIGNAL);
  let parsed: HeapSnapshotFile | undefined;
  // The file appears when writing starts: it is complete once it parses.
  await waitFor(
    () => {
      const file = readdirSync(dir).find((name) => !before.has(name) && name.includes(`.${pid}.`));
      if (file === undefined) return false;
      try {
        parsed = JSON.parse(readFileSync(join(dir, file), 'utf8')) as HeapSnapshotFile;
        return true;
      } catch {
        return false;
      }
    },
    timeoutMs,
    `a heap snapshot from ${pid}`,
  );
  return parsed as HeapSnapshotFile;
}

function tallyBySize(file: HeapSnapshotFile): HeapTally {
  const fields = file.snapshot.meta.node_fields;
  const stride = fields.length;
  const typeField = fields.indexOf('type');
  const nameField = fields.indexOf('name');
  const sizeField = fields.indexOf('self_size');
  const types = file.snapshot.meta.node_types[0];
  const byKind = new Map<string, { count: number; bytes: number }>();
  let totalBytes = 0;
  for (let offset = 0; offset < file.nodes.length; offset += stride) {
    const type = types[file.nodes[offset + typeField] as number] as string;
    const bytes = file.nodes[offset + sizeField] as number;
    totalBytes += bytes;
    const kind =
      type === 'object' || type === 'closure'
        ? `${type}:${file.strings[file.nodes[offset + nameField] as number]}`
        : type;
    const entry = byKind.get(kind) ?? { count: 0, bytes: 0 };
    entry.count += 1;
    entry.bytes += bytes;
    byKind.set(kind, entry);
  }
  return { totalBytes, byKind };
}

function countByName(file: HeapSnapshotFile, names: readonly string[]): Map<string, number> {
  const fields = file.snapshot.meta.node_fields;
  const stride = fields.length;
  const typeField = fields.indexOf('type');
  const nameField = fields.indexOf('name');
  const objectType = file.snapshot.meta.node_types[0].indexOf('object');
  const wanted = new Set(names);
  const counts = new Map<string, number>(names.map((name) => [name, 0]));
  for (let offset = 0; offset < file.nodes.length; offset += stride) {
    if (file.nodes[offset + typeField] !== objectType) continue;
    const name = file.strings[file.nodes[offset + nameField] as number] as string;
    if (wanted.has(name)) counts.set(name, (counts.get(name) ?? 0) + 1);
  }
  return counts;
}
