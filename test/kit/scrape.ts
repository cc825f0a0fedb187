/** The metrics endpoint of a running unhitch, read as Prometheus text. */
import { get as httpGet } from 'node:http';

/** One scrape: series name with its labels → value. */
export function scrapeMetrics(port: number): Promise<Map<string, number>> {
  return new Promise((resolve, reject) => {
    httpGet(`http://127.0.0.1:${port}/metrics`, (response) => {
      let body = '';
      response.setEncoding('utf8').on('data', (chunk: string) => {
        body += chunk;
      });
      response.once('end', () => {
        const samples = new Map<string, number>();
        for (const line of body.split('\n')) {
          if (line === '' || line.startsWith('#')) continue;
          const split = line.lastIndexOf(' ');
          samples.set(line.slice(0, split), Number(line.slice(split + 1)));
        }
        resolve(samples);
      });
    }).once('error', reject);
  });
}
