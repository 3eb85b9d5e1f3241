/**
 * The agent's pod records in bun:sqlite (WAL, synchronous FULL): every change
 * is one committed transaction, so the state survives a crash at any instant.
 */
import { Database } from "bun:sqlite";
import { AlreadyExistsError } from "../errors.ts";
import type { PodRecord } from "./pod.ts";

export class PodStore {
  readonly #db: Database;
  readonly #get;
  readonly #list;
  readonly #insert;
  readonly #update;
  readonly #delete;
  /** Called after every change (the agent's exit watch follows the pods' pids). */
  onChange: (() => void) | null = null;

  constructor(path: string) {
    this.#db = new Database(path, { create: true, strict: true });
    this.#db.exec("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 5000;");
    this.#db.exec("CREATE TABLE IF NOT EXISTS pods (name TEXT PRIMARY KEY, record TEXT NOT NULL, updated_at TEXT NOT NULL)");
    this.#get = this.#db.query<{ record: string }, { name: string }>("SELECT record FROM pods WHERE name = $name");
    this.#list = this.#db.query<{ record: string }, []>("SELECT record FROM pods ORDER BY name");
    this.#insert = this.#db.query("INSERT INTO pods (name, record, updated_at) VALUES ($name, $record, $at)");
    this.#update = this.#db.query("UPDATE pods SET record = $record, updated_at = $at WHERE name = $name");
    this.#delete = this.#db.query("DELETE FROM pods WHERE name = $name");
  }

  get(name: string): PodRecord | null {
    const row = this.#get.get({ name });
    return row ? (JSON.parse(row.record) as PodRecord) : null;
  }

  list(): PodRecord[] {
    return this.#list.all().map((r) => JSON.parse(r.record) as PodRecord);
  }

  /** Add a new pod; its name must be free. */
  insert(r: PodRecord): void {
    try {
      this.#insert.run({ name: r.spec.name, record: JSON.stringify(r), at: new Date().toISOString() });
      this.onChange?.();
    } catch (e) {
      if (String((e as Error).message).includes("UNIQUE")) throw new AlreadyExistsError(`Pod "${r.spec.name}" already exists`);
      throw e;
    }
  }

  update(r: PodRecord): void {
    this.#update.run({ name: r.spec.name, record: JSON.stringify(r), at: new Date().toISOString() });
    this.onChange?.();
  }

  delete(name: string): void {
    this.#delete.run({ name });
    this.onChange?.();
  }

  close(): void {
    this.#db.close();
  }
}
