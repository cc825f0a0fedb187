/**
 * The primary's one listener for worker messages. Every message type of messages.ts has
 * exactly one entry in the handler table (the compiler checks that), so the whole
 * worker → primary protocol reads in one place: Primary wires the table.
 */
import cluster, { type Worker } from 'node:cluster';
import { isWorkerMessage, type WorkerMessage } from './messages.js';

type WorkerMessageType = WorkerMessage['type'];

export type WorkerMessageHandlers = {
  readonly [Type in WorkerMessageType]: (
    worker: Worker,
    message: Extract<WorkerMessage, { type: Type }>,
  ) => void;
};

/** Routes each worker message to its handler until the returned function is called. */
export function dispatchWorkerMessages(handlers: WorkerMessageHandlers): () => void {
  // Other libraries share the channel (prom-client's aggregator): not ours, not routed.
  const onMessage = (worker: Worker, message: unknown): void => {
    if (!isWorkerMessage(message)) return;
    const handler = handlers[message.type] as
      | ((worker: Worker, message: WorkerMessage) => void)
      | undefined;
    handler?.(worker, message);
  };
  cluster.on('message', onMessage);
  return () => {
    cluster.off('message', onMessage);
  };
}
