/**
 * RESULTS.md holds one section per bench script, delimited by HTML comments so each script
 * replaces only its own section and leaves the others' results alone.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { commandLine } from './cli-args.js';
import { machineDescription } from './machine.js';
import { REFERENCE_NOTES } from './references.js';
import { parseMarkdownTable } from './table.js';

const DEFAULT_TITLE =
  '# unhitch benchmark results\n\nEach section is rewritten by the script named in it.\n';

function beginMarker(section: string): string {
  return `<!-- bench:${section}:begin -->`;
}
function endMarker(section: string): string {
  return `<!-- bench:${section}:end -->`;
}

/** Returns `document` with the named section's body replaced (or appended when absent). */
export function replaceSection(document: string, section: string, body: string): string {
  const begin = beginMarker(section);
  const end = endMarker(section);
  const block = `${begin}\n${body.trim()}\n${end}`;
  const start = document.indexOf(begin);
  const stop = document.indexOf(end);
  if (start >= 0 && stop > start) {
    return document.slice(0, start) + block + document.slice(stop + end.length);
  }
  const base = document.trim() === '' ? DEFAULT_TITLE : document;
  return `${base.replace(/\n*$/, '\n\n')}${block}\n`;
}

/** The body of a section, or null when the document has none. */
export function readSection(document: string, section: string): string | null {
  const begin = beginMarker(section);
  const start = document.indexOf(begin);
  const stop = document.indexOf(endMarker(section));
  if (start < 0 || stop < start) return null;
  return document.slice(start + begin.length, stop).trim();
}

/** A table row as header → cell. */
export type SectionRow = Readonly<Record<string, string>>;

/** The rows of every table in `section` that has every one of `columns`, one list per table. */
export function sectionTables(
  document: string,
  section: string,
  columns: readonly string[],
): SectionRow[][] {
  const body = readSection(document, section);
  if (body === null) return [];
  const tables: SectionRow[][] = [];
  for (const block of body.split(/\n\s*\n/)) {
    if (!block.trim().startsWith('|')) continue;
    const [header, ...rows] = parseMarkdownTable(block);
    if (!header || !columns.every((column) => header.includes(column))) continue;
    tables.push(
      rows.map((cells) => Object.fromEntries(header.map((title, i) => [title, cells[i] ?? '']))),
    );
  }
  return tables;
}

/** The rows of the first table in `section` that has every one of `columns`; [] without one. */
export function sectionTableRows(
  document: string,
  section: string,
  columns: readonly string[],
): SectionRow[] {
  return sectionTables(document, section, columns)[0] ?? [];
}

export function updateResultsFile(path: string, section: string, body: string): void {
  const current = existsSync(path) ? readFileSync(path, 'utf8') : '';
  writeFileSync(path, replaceSection(current, section, body));
}

/** One script's section: every script states its command and machine the same way. */
export interface ResultsSection {
  /** e.g. '## https: autocannon through each proxy…'. */
  readonly heading: string;
  /** Bullet lines after the machine description: layout, runs per row, limits hit. */
  readonly notes: readonly string[];
  /** Tables and paragraphs in order, a blank line after each. */
  readonly blocks: readonly string[];
  /** What could not run, and why. */
  readonly skipped?: readonly string[];
  /** Close with the earlier reference figures. */
  readonly references?: boolean;
}

export function formatResultsSection(section: ResultsSection): string {
  const skipped = section.skipped ?? [];
  return [
    section.heading,
    '',
    `Command: \`${commandLine()}\``,
    '',
    ...machineDescription(),
    ...section.notes,
    '',
    ...section.blocks.flatMap((block) => [block, '']),
    ...(skipped.length > 0 ? ['Skipped:', ...skipped.map((s) => `- ${s}`), ''] : []),
    ...(section.references ? [REFERENCE_NOTES] : []),
  ].join('\n');
}
