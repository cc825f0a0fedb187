/** A dependency-free horizontal bar chart, good enough for RESULTS.md. */

export interface Bar {
  readonly label: string;
  readonly value: number;
}

export interface BarChart {
  readonly title: string;
  readonly unit: string;
  readonly bars: readonly Bar[];
}

function escapeXml(text: string): string {
  return text
    .replaceAll('&', '&amp;')
    .replaceAll('<', '&lt;')
    .replaceAll('>', '&gt;')
    .replaceAll('"', '&quot;');
}

const PALETTE = ['#4e79a7', '#f28e2b', '#e15759', '#76b7b2', '#59a14f', '#edc948'];

/** Several charts stacked vertically in one SVG document. */
export function barChartsSvg(charts: readonly BarChart[]): string {
  const width = 760;
  const labelWidth = 230;
  const barHeight = 22;
  const gap = 6;
  const parts: string[] = [];
  let y = 10;
  for (const chart of charts) {
    parts.push(
      `<text x="10" y="${y + 16}" font-weight="bold" font-size="15">${escapeXml(chart.title)}</text>`,
    );
    y += 28;
    const max = Math.max(1e-9, ...chart.bars.map((b) => (Number.isFinite(b.value) ? b.value : 0)));
    chart.bars.forEach((bar, index) => {
      const value = Number.isFinite(bar.value) ? bar.value : 0;
      const length = ((width - labelWidth - 110) * value) / max;
      const color = PALETTE[index % PALETTE.length] ?? '#888';
      parts.push(
        `<text x="${labelWidth - 8}" y="${y + 15}" text-anchor="end" font-size="12">${escapeXml(bar.label)}</text>`,
        `<rect x="${labelWidth}" y="${y}" width="${length.toFixed(1)}" height="${barHeight}" fill="${color}"/>`,
        `<text x="${(labelWidth + length + 6).toFixed(1)}" y="${y + 15}" font-size="12">${escapeXml(
          `${value.toLocaleString('en-US', { maximumFractionDigits: 1 })} ${chart.unit}`,
        )}</text>`,
      );
      y += barHeight + gap;
    });
    y += 14;
  }
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${y}" viewBox="0 0 ${width} ${y}" font-family="sans-serif" role="img">`,
    `<title>${escapeXml(charts.map((chart) => chart.title).join('; '))}</title>`,
    `<rect width="100%" height="100%" fill="white"/>`,
    ...parts,
    '</svg>',
    '',
  ].join('\n');
}
