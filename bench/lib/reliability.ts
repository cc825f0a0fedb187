/**
 * Whether a bench run's figures can be trusted: a window in which other processes took more
 * than a tenth of the proxy's CPU measured the machine's load as much as the proxy. Such a
 * run's rows say UNRELIABLE, it writes no ratio line (a ratio between a quiet and a loaded
 * run, or between two loaded ones, is noise with two decimals), and it says so on stderr.
 */

/** Above this share of the proxy CPU taken by other processes, a run is unreliable. */
export const UNRELIABLE_OTHER_LOAD_PERCENT = 10;

export const UNRELIABLE = 'UNRELIABLE';

export function isUnreliable(otherLoadPercent: number | null | undefined): boolean {
  return (
    otherLoadPercent !== null &&
    otherLoadPercent !== undefined &&
    otherLoadPercent > UNRELIABLE_OTHER_LOAD_PERCENT
  );
}

/** Collects the runs' other-load figures of one bench run. */
export class Reliability {
  /** Label → the highest other-load share seen for it, for the unreliable runs only. */
  private readonly unreliableRuns = new Map<string, number>();
  /** Set by a bench whose ratio lines come from named rows only (reliableRows()). */
  ratiosFromReliableRows = false;

  /**
   * Records a run's other load on the proxy CPU and returns its table cell: the percentage,
   * followed by UNRELIABLE above the threshold ('–' when it could not be measured).
   */
  otherLoadCell(label: string, otherLoadPercent: number | null | undefined): string {
    if (otherLoadPercent === null || otherLoadPercent === undefined) return '–';
    const shown = otherLoadPercent.toFixed(0);
    if (!isUnreliable(otherLoadPercent)) return shown;
    const before = this.unreliableRuns.get(label) ?? 0;
    this.unreliableRuns.set(label, Math.max(before, otherLoadPercent));
    return `${shown} ${UNRELIABLE}`;
  }

  get unreliable(): boolean {
    return this.unreliableRuns.size > 0;
  }

  /** `lines` when every run was reliable, none otherwise. */
  ratioLines(lines: readonly string[]): string[] {
    return this.unreliable ? [] : [...lines];
  }

  /**
   * Whether every run recorded under these labels was reliable: a ratio made only of such
   * runs means something even when an unrelated row of the same bench was disturbed.
   */
  reliableRows(...labels: readonly string[]): boolean {
    return labels.every((label) => !this.unreliableRuns.has(label));
  }

  /** One line for stderr and the results section; null when every run was reliable. */
  summary(): string | null {
    if (!this.unreliable) return null;
    const runs = [...this.unreliableRuns]
      .map(([label, percent]) => `${label} (${percent.toFixed(0)} %)`)
      .join(', ');
    const ratios = this.ratiosFromReliableRows
      ? 'a ratio line is written only from rows that are not'
      : 'no ratio line is written';
    return `${UNRELIABLE}: other processes took more than ${UNRELIABLE_OTHER_LOAD_PERCENT} % of the proxy CPU in ${runs}; those rows are marked and ${ratios}. Rerun on a quiet machine.`;
  }
}
