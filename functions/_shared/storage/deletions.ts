import type { Database } from '../db/database.ts';
import * as tombstones from '../db/deletions-repo.ts';
import type { Tombstone } from '../db/deletions-repo.ts';
import type { Logger } from '../log.ts';
import type { GenerationStorage } from './generation-storage.ts';
import { backoffMs } from './upload-queue.ts';

export interface DeletionReport {
  finished: number;
  still_failing: number;
  /** Tombstones left, due or not. */
  pending: number;
}

/**
 * Finishes deletes. A generation's delete commits its row's removal and a tombstone together (a trigger writes
 * it); then every copy — bucket object, local copy, cache entry — is removed, and the tombstone goes only once all
 * are gone. The first attempt runs right after the commit; what fails stays due for the drain and maintenance,
 * with a backoff. A delete therefore never leaves a row pointing at nothing, nor an object behind its row.
 */
export class Deletions {
  private readonly now: () => number;
  constructor(
    private readonly db: Database,
    private readonly storage: GenerationStorage,
    private readonly log: Logger,
    now?: () => number,
  ) {
    this.now = now ?? Date.now;
  }

  /** Right after a delete committed: removes its copies once. Never throws; a failure is retried later. */
  async afterDelete(generationId: string): Promise<void> {
    const due = await this.db.asService((tx) => tombstones.forGeneration(tx, generationId)).catch(() => []);
    for (const t of due) await this.finish(t);
  }

  /** The due tombstones, up to `limit`: for the drain and maintenance. */
  async drain(limit = 100): Promise<DeletionReport> {
    const due = await this.db.asService((tx) => tombstones.listDue(tx, new Date(this.now()), limit));
    let finished = 0;
    for (const t of due) if (await this.finish(t)) finished++;
    const pending = await this.db.asService((tx) => tombstones.count(tx));
    return { finished, still_failing: due.length - finished, pending };
  }

  private async finish(t: Tombstone): Promise<boolean> {
    const fields = { generation_id: t.ref.generationId, project_id: t.ref.projectId, key: t.storageKey, attempt: t.attempts + 1 };
    try {
      await this.storage.removeCopies(t.ref, t.storageKey);
      await this.db.asService((tx) => tombstones.done(tx, t.id));
      return true;
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      const next = new Date(this.now() + backoffMs(t.attempts + 1));
      await this.db.asService((tx) => tombstones.failed(tx, t.id, message, next)).catch(() => {});
      this.log.warn('delete not finished yet: a copy could not be removed; retried later', { ...fields, error: message, next_attempt_at: next.toISOString() });
      return false;
    }
  }
}
