/**
 * The seed benchmark's markdown table: one row per backend × proxy, parsed and formatted
 * so scripts can print it, store it in RESULTS.md and read it back.
 */

/** One measured backend × proxy combination. `null` means "not measured / not applicable". */
export interface ResultRow {
  readonly backend: string;
  readonly proxy: string;
  readonly responsesPerSecond: number;
  /** responses/s divided by the same backend's no-proxy responses/s. */
  readonly ratioToNoProxy: number | null;
  readonly proxyCpuMicrosPerResponse: number | null;
  readonly proxyKiBPerConnection: number | null;
  readonly errors: number;
}

export const RESULT_TABLE_HEADER = [
  'Backend',
  'Proxy',
  'Responses/s',
  'vs no proxy',
  'Proxy CPU µs/response',
  'Proxy KiB/conn',
  'Errors',
] as const;

const NOT_APPLICABLE = '–';

/** Thousands separated by a thin comma, no decimals: 123456.7 → "123,457". */
export function formatCount(value: number): string {
  return Math.round(value).toLocaleString('en-US');
}

/** Fixed decimals, or the placeholder for a missing value. */
export function formatDecimal(value: number | null, decimals = 1): string {
  if (value === null || !Number.isFinite(value)) return NOT_APPLICABLE;
  return value.toFixed(decimals);
}

/** 0.874 → "87.4 %"; missing → placeholder. */
export function formatRatio(ratio: number | null): string {
  if (ratio === null || !Number.isFinite(ratio)) return NOT_APPLICABLE;
  return `${(ratio * 100).toFixed(1)} %`;
}

/** value / baseline, or null when there is no usable baseline. */
export function ratioTo(value: number, baseline: number | null | undefined): number | null {
  if (baseline === null || baseline === undefined || !(baseline > 0)) return null;
  return value / baseline;
}

/** Fills each row's ratio from the `none` proxy row of the same backend. */
export function withRatios(rows: readonly ResultRow[], baselineProxy = 'none'): ResultRow[] {
  return rows.map((row) => {
    const baseline = rows.find((r) => r.backend === row.backend && r.proxy === baselineProxy);
    return {
      ...row,
      ratioToNoProxy: ratioTo(row.responsesPerSecond, baseline?.responsesPerSecond),
    };
  });
}

/**
 * Generic markdown table; cells must not contain `|`. Columns are padded to their widest cell,
 * the way the repository's formatter (biome) prints markdown tables, so RESULTS.md as written
 * by the scripts passes `npm run lint` unchanged.
 */
export function formatMarkdownTable(
  header: readonly string[],
  rows: readonly (readonly string[])[],
): string {
  const widths = header.map((title, column) =>
    Math.max(3, title.length, ...rows.map((row) => (row[column] ?? '').length)),
  );
  const line = (cells: readonly string[]): string =>
    `| ${widths.map((width, column) => (cells[column] ?? '').padEnd(width)).join(' | ')} |`;
  const separator = `| ${widths.map((width) => '-'.repeat(width)).join(' | ')} |`;
  return [line(header), separator, ...rows.map(line)].join('\n');
}

export function formatResultTable(rows: readonly ResultRow[]): string {
  return formatMarkdownTable(
    RESULT_TABLE_HEADER,
    rows.map((row) => [
      row.backend,
      row.proxy,
      formatCount(row.responsesPerSecond),
      formatRatio(row.ratioToNoProxy),
      formatDecimal(row.proxyCpuMicrosPerResponse),
      formatDecimal(row.proxyKiBPerConnection),
      formatCount(row.errors),
    ]),
  );
}

/** Splits a markdown table into its cell text, header row first, separator dropped. */
export function parseMarkdownTable(markdown: string): string[][] {
  return markdown
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line.startsWith('|') && line.endsWith('|'))
    .map((line) =>
      line
        .slice(1, -1)
        .split('|')
        .map((cell) => cell.trim()),
    )
    .filter((cells) => !cells.every((cell) => /^:?-{3,}:?$/.test(cell)));
}

function parseCount(text: string): number {
  const value = Number(text.replaceAll(',', ''));
  if (!Number.isFinite(value))
    throw Object.assign(new Error(`not a number: ${text}`), { code: 'BENCH_TABLE_NUMBER' });
  return value;
}

function parseOptional(text: string, suffix = ''): number | null {
  if (text === NOT_APPLICABLE || text === '-' || text === '') return null;
  return parseCount(suffix && text.endsWith(suffix) ? text.slice(0, -suffix.length).trim() : text);
}

/** Reads back a table written by formatResultTable (values at the printed precision). */
export function parseResultTable(markdown: string): ResultRow[] {
  const [header, ...rows] = parseMarkdownTable(markdown);
  if (!header || header.join('|') !== RESULT_TABLE_HEADER.join('|')) {
    throw Object.assign(new Error('not a result table: unexpected header'), {
      code: 'BENCH_TABLE_HEADER',
    });
  }
  return rows.map((cells) => {
    if (cells.length !== RESULT_TABLE_HEADER.length) {
      throw Object.assign(new Error(`row has ${cells.length} cells`), { code: 'BENCH_TABLE_ROW' });
    }
    const [backend, proxy, rps, ratio, cpu, kib, errors] = cells as [
      string,
      string,
      string,
      string,
      string,
      string,
      string,
    ];
    const ratioPercent = parseOptional(ratio, '%');
    return {
      backend,
      proxy,
      responsesPerSecond: parseCount(rps),
      ratioToNoProxy: ratioPercent === null ? null : ratioPercent / 100,
      proxyCpuMicrosPerResponse: parseOptional(cpu),
      proxyKiBPerConnection: parseOptional(kib),
      errors: parseCount(errors),
    };
  });
}

/** Median of the finite values, or null when there are none. */
export function median(values: readonly (number | null)[]): number | null {
  const sorted = values
    .filter((v): v is number => v !== null && Number.isFinite(v))
    .sort((a, b) => a - b);
  if (sorted.length === 0) return null;
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1
    ? (sorted[middle] as number)
    : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2;
}

/**
 * One row from repeated runs of the same backend × proxy: the median of each metric (noise on
 * a shared 2-CPU machine is large), errors summed so none is hidden.
 */
export function medianRow(runs: readonly ResultRow[]): ResultRow {
  const first = runs[0];
  if (!first) throw Object.assign(new Error('no runs'), { code: 'BENCH_NO_RUNS' });
  return {
    backend: first.backend,
    proxy: first.proxy,
    responsesPerSecond: median(runs.map((r) => r.responsesPerSecond)) ?? 0,
    ratioToNoProxy: null,
    proxyCpuMicrosPerResponse: median(runs.map((r) => r.proxyCpuMicrosPerResponse)),
    proxyKiBPerConnection: median(runs.map((r) => r.proxyKiBPerConnection)),
    errors: runs.reduce((sum, r) => sum + r.errors, 0),
  };
}

/**
 * unhitch's CPU per relayed response over Hitch's, both from the same closed-loop run and the
 * same backend, on a line of its own. Labelled as a saturation figure: each proxy ran at its
 * own rate, so the µs carry different per-wake-up overheads; the ratio the performance goals
 * are judged by is equal-load's `ratio unhitch/hitch cpu-per-response`. Null when either is
 * missing (Hitch not installed, or it did not run).
 */
export function cpuPerResponseRatioLine(
  rows: readonly ResultRow[],
  backend = 'uws',
): string | null {
  const cpuOf = (proxy: string): number | null =>
    rows.find((r) => r.backend === backend && r.proxy === proxy)?.proxyCpuMicrosPerResponse ?? null;
  const unhitch = cpuOf('unhitch');
  const ratio = unhitch === null ? null : ratioTo(unhitch, cpuOf('hitch'));
  if (ratio === null) return null;
  return `saturation ratio unhitch/hitch cpu-per-response: ${ratio.toFixed(2)} (closed loop, each proxy at its own rate; bench/equal-load gives the comparable ratio)`;
}

/**
 * The ratio the performance goals are judged by: unhitch's proxy CPU per unit over Hitch's with
 * both at the same offered rate (bench/equal-load), saying so on the line:
 * "ratio unhitch/hitch cpu-per-response: 1.12 (equal load: …)". Null without both figures.
 */
export function equalLoadRatioLine(
  kind: 'messages' | 'full' | 'resumed',
  unhitchMicros: number | null,
  hitchMicros: number | null,
  loadDescription: string,
): string | null {
  const ratio = unhitchMicros === null ? null : ratioTo(unhitchMicros, hitchMicros);
  if (ratio === null) return null;
  const metric = kind === 'messages' ? 'cpu-per-response' : `cpu-per-${kind}-handshake`;
  return `ratio unhitch/hitch ${metric}: ${ratio.toFixed(2)} (equal load: ${loadDescription})`;
}
