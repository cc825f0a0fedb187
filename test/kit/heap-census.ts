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
  /**
   * A tally of `pid` once no object named in `transient` is left in it: a connection still
   * closing is gone by a later snapshot, a leak is in every one, so at most `snapshots` are
   * taken and the last is returned (its counts then show the leak).
   */
  idleTally(pid: number, transient: readonly string[], snapshots?: number): Promise<HeapTally>;
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
    async idleTally(pid, transient, snapshots = 3) {
      let heap = tallyBySize(await snapshot(dir, pid, 30_000));
      for (let taken = 1; taken < snapshots && anyLeft(objectCounts(heap, transient)); taken++)
        heap = tallyBySize(await snapshot(dir, pid, 30_000));
      return heap;
    },
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/** How many objects of each constructor in `names` a tally holds. */
export function objectCounts(tally: HeapTally, names: readonly string[]): Map<string, number> {
  return new Map(names.map((name) => [name, tally.byKind.get(`object:${name}`)?.count ?? 0]));
}

const anyLeft = (counts: Map<string, number>): boolean =>
  [...counts.values()].some((count) => count > 0);

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

/** The `top` kinds whose bytes grew most from `before` to `after`, for a failure message. */
export function largestGrowth(before: HeapTally, after: HeapTally, top = 5): string {
  return [...after.byKind]
    .map(([kind, { count, bytes }]) => {
      const was = before.byKind.get(kind) ?? { count: 0, bytes: 0 };
      return { kind, count: count - was.count, bytes: bytes - was.bytes };
    })
    .sort((a, b) => b.bytes - a.bytes)
    .slice(0, top)
    .map(
      ({ kind, count, bytes }) =>
        `${kind} +${(bytes / 1024).toFixed(0)} KiB (${count >= 0 ? '+' : ''}${count})`,
    )
    .join(', ');
}
