/**
 * The image store's records, in SQLite (node:sqlite) in the store dir, so images survive a
 * restart: images (as JSON), the references and digests that lead to them, and the layers on
 * disk with their sizes, the boot they were made in and whether they are known to be on the
 * disk (synced) rather than in the page cache only. Each layer record gets the next number of
 * a sequence that never goes back (kept in `counters`): what a disk sync covers is told by it,
 * never by rowids, which SQLite gives again after a delete.
 */
import { DatabaseSync } from "node:sqlite";
import type { ImageRecord } from "@sbx/server-kit";

/** An image as stored: everything but its references, which live in their own table. */
export type StoredImage = Omit<ImageRecord, "refs">;

export class ImageDb {
  readonly #db: DatabaseSync;

  constructor(path: string) {
    this.#db = new DatabaseSync(path);
    this.#db.exec(`
      PRAGMA journal_mode = WAL;
      PRAGMA synchronous = NORMAL;
      CREATE TABLE IF NOT EXISTS images (
        id TEXT PRIMARY KEY,
        record TEXT NOT NULL
      );
      CREATE TABLE IF NOT EXISTS image_refs (
        ref TEXT PRIMARY KEY,
        image_id TEXT NOT NULL,
        added INTEGER NOT NULL
      );
      CREATE TABLE IF NOT EXISTS image_digests (
        digest TEXT NOT NULL,
        image_id TEXT NOT NULL,
        PRIMARY KEY (digest, image_id)
      );
      CREATE TABLE IF NOT EXISTS layers (
        diff_id TEXT PRIMARY KEY,
        size_bytes INTEGER NOT NULL
      );
      CREATE TABLE IF NOT EXISTS counters (
        name TEXT PRIMARY KEY,
        value INTEGER NOT NULL
      );
      INSERT OR IGNORE INTO counters (name, value) VALUES ('layer_seq', 0);
    `);
    // Layers recorded before these columns were: taken as synced (their boot is unknown).
    const columns = new Set(
      this.#db
        .prepare("PRAGMA table_info(layers)")
        .all()
        .map((row) => String(row.name)),
    );
    if (!columns.has("boot_id")) this.#db.exec("ALTER TABLE layers ADD COLUMN boot_id TEXT NOT NULL DEFAULT ''");
    if (!columns.has("synced")) this.#db.exec("ALTER TABLE layers ADD COLUMN synced INTEGER NOT NULL DEFAULT 1");
    // Layers recorded before the sequence: 0, before any a sync of this store's can take.
    if (!columns.has("seq")) this.#db.exec("ALTER TABLE layers ADD COLUMN seq INTEGER NOT NULL DEFAULT 0");
  }

  #refsOf(id: string): string[] {
    return this.#db
      .prepare("SELECT ref FROM image_refs WHERE image_id = ? ORDER BY added DESC, rowid DESC")
      .all(id)
      .map((row) => String(row.ref));
  }

  #withRefs(record: string): ImageRecord {
    const stored = JSON.parse(record) as StoredImage;
    return { ...stored, refs: this.#refsOf(stored.id) };
  }

  images(): ImageRecord[] {
    return this.#db
      .prepare("SELECT record FROM images ORDER BY rowid")
      .all()
      .map((row) => this.#withRefs(String(row.record)));
  }

  image(id: string): ImageRecord | undefined {
    const row = this.#db.prepare("SELECT record FROM images WHERE id = ?").get(id);
    return row === undefined ? undefined : this.#withRefs(String(row.record));
  }

  /** The image a manifest or index digest leads to (the newest, when several). */
  byDigest(digest: string): ImageRecord | undefined {
    const row = this.#db.prepare("SELECT image_id FROM image_digests WHERE digest = ? ORDER BY rowid DESC").get(digest);
    return row === undefined ? undefined : this.image(String(row.image_id));
  }

  byRef(ref: string): ImageRecord | undefined {
    const row = this.#db.prepare("SELECT image_id FROM image_refs WHERE ref = ?").get(ref);
    return row === undefined ? undefined : this.image(String(row.image_id));
  }

  /** Saves an image with the digests that lead to it, and points `refs` at it. */
  saveImage(image: StoredImage, digests: readonly string[], refs: readonly string[], now: number): void {
    this.#db.exec("BEGIN");
    try {
      this.#db
        .prepare("INSERT INTO images (id, record) VALUES (?, ?) ON CONFLICT(id) DO NOTHING")
        .run(image.id, JSON.stringify(image));
      this.#addDigests(image.id, digests);
      for (const ref of refs) this.#pointRef(ref, image.id, now);
      this.#db.exec("COMMIT");
    } catch (error) {
      this.#db.exec("ROLLBACK");
      throw error;
    }
  }

  #addDigests(id: string, digests: readonly string[]): void {
    const insert = this.#db.prepare("INSERT OR IGNORE INTO image_digests (digest, image_id) VALUES (?, ?)");
    for (const digest of digests) insert.run(digest, id);
  }

  /** A reference now names `id` (a tag moves from the image it named before). */
  #pointRef(ref: string, id: string, now: number): void {
    this.#db
      .prepare(
        "INSERT INTO image_refs (ref, image_id, added) VALUES (?, ?, ?) ON CONFLICT(ref) DO UPDATE SET image_id = excluded.image_id, added = excluded.added",
      )
      .run(ref, id, now);
  }

  /** Records that `digests` and `refs` lead to the existing image `id`. */
  addAliases(id: string, digests: readonly string[], refs: readonly string[], now: number): void {
    this.#addDigests(id, digests);
    for (const ref of refs) this.#pointRef(ref, id, now);
  }

  deleteImage(id: string): void {
    this.#db.exec("BEGIN");
    this.#db.prepare("DELETE FROM images WHERE id = ?").run(id);
    this.#db.prepare("DELETE FROM image_refs WHERE image_id = ?").run(id);
    this.#db.prepare("DELETE FROM image_digests WHERE image_id = ?").run(id);
    this.#db.exec("COMMIT");
  }

  layerSize(diffId: string): number | undefined {
    const row = this.#db.prepare("SELECT size_bytes FROM layers WHERE diff_id = ?").get(diffId);
    return row === undefined ? undefined : Number(row.size_bytes);
  }

  layers(): { diffId: string; sizeBytes: number }[] {
    return this.#db
      .prepare("SELECT diff_id, size_bytes FROM layers")
      .all()
      .map((row) => ({ diffId: String(row.diff_id), sizeBytes: Number(row.size_bytes) }));
  }

  /** Bytes the recorded layers take, all together. */
  layerBytes(): number {
    const row = this.#db.prepare("SELECT COALESCE(SUM(size_bytes), 0) AS total FROM layers").get();
    return Number(row?.total ?? 0);
  }

  /** Records a layer made in boot `bootId`, not known to be on the disk yet, with the sequence's next number. */
  saveLayer(diffId: string, sizeBytes: number, bootId: string): void {
    this.#db.exec("BEGIN");
    try {
      const exists = this.#db.prepare("SELECT 1 FROM layers WHERE diff_id = ?").get(diffId) !== undefined;
      if (!exists) {
        const row = this.#db
          .prepare("UPDATE counters SET value = value + 1 WHERE name = 'layer_seq' RETURNING value")
          .get() as { value: number | bigint };
        this.#db
          .prepare("INSERT INTO layers (diff_id, size_bytes, boot_id, synced, seq) VALUES (?, ?, ?, 0, ?)")
          .run(diffId, sizeBytes, bootId, row.value);
      }
      this.#db.exec("COMMIT");
    } catch (error) {
      this.#db.exec("ROLLBACK");
      throw error;
    }
  }

  /** The layer sequence's last number (0: none yet): a disk sync that starts now covers the layers up to it. */
  layerSeq(): number {
    const row = this.#db.prepare("SELECT value FROM counters WHERE name = 'layer_seq'").get();
    return Number(row?.value ?? 0);
  }

  /** The layers recorded up to sequence number `last` are on the disk. */
  markSynced(last: number): void {
    this.#db.prepare("UPDATE layers SET synced = 1 WHERE synced = 0 AND seq <= ?").run(last);
  }

  /** Whether any layer is not known to be on the disk. */
  hasUnsynced(): boolean {
    return this.#db.prepare("SELECT 1 FROM layers WHERE synced = 0 LIMIT 1").get() !== undefined;
  }

  /** Layers made in another boot than `bootId` and never known to be on the disk. */
  unsyncedFromOtherBoots(bootId: string): string[] {
    return this.#db
      .prepare("SELECT diff_id FROM layers WHERE synced = 0 AND boot_id != ?")
      .all(bootId)
      .map((row) => String(row.diff_id));
  }

  deleteLayer(diffId: string): void {
    this.#db.prepare("DELETE FROM layers WHERE diff_id = ?").run(diffId);
  }

  close(): void {
    this.#db.close();
  }
}
